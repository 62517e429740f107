using MProxy.Abstractions.Policy;
using MProxy.Grains.Capacity;

namespace MProxy.Grains.Tests.Capacity;

public sealed class CapacityLogicTests
{
    private static readonly BackendId Backend = new("app");
    private static readonly DateTimeOffset Start = new(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);

    private static readonly PolicyConfig Config = new()
    {
        LeasePeriod = TimeSpan.FromSeconds(5),
        EdgeLiveness = TimeSpan.FromSeconds(3),
        Backends = [new BackendPolicy(Backend, 10)],
    };

    [Fact]
    public void Exchange_ThreeEdgesWantingMoreThanLimit_EachGetsFairShareAndSumStaysUnderLimit()
    {
        var state = CapacityState.Initial;
        var applied = new Dictionary<string, BackendSlotLease>();
        for (var round = 0; round < 8; round++)
            foreach (var name in new[] { "a", "b", "c" })
            {
                var now = Start + TimeSpan.FromSeconds(round);
                var demand = new BackendSlotDemand { Backend = Backend, Wanted = 8, Open = applied.TryGetValue(name, out var l) ? l.Slots : 0, AppliedLeaseSequence = l?.Sequence ?? 0 };
                (state, var lease) = CapacityLogic.Exchange(state, Config, Backend, new EdgeId(name), demand, now);
                applied[name] = lease;
                Assert.True(state.Edges.Sum(e => CapacityLogic.Committed(e, Config, now)) <= 10);
            }

        Assert.Equal(10, applied.Values.Sum(l => l.Slots));
        Assert.All(applied.Values, l => Assert.InRange(l.Slots, 3, 4));
    }

    [Fact]
    public void Exchange_RandomWantsAndLostReplies_SlotsHeldNeverExceedLimit()
    {
        var random = new Random(7);
        var state = CapacityState.Initial;
        var held = new Dictionary<int, BackendSlotLease>();
        for (var step = 0; step < 2000; step++)
        {
            var now = Start + TimeSpan.FromSeconds(step * 0.25);
            var edge = random.Next(5);
            held.TryGetValue(edge, out var current);
            var demand = new BackendSlotDemand { Backend = Backend, Wanted = random.Next(12), Open = current?.Slots ?? 0, AppliedLeaseSequence = current?.Sequence ?? 0 };
            (state, var lease) = CapacityLogic.Exchange(state, Config, Backend, new EdgeId($"edge-{edge}"), demand, now);
            if (random.NextDouble() > 0.2)
                held[edge] = lease;
            var holding = held.Values.Where(l => l.ValidUntil > now).Sum(l => l.Slots);
            Assert.True(holding <= 10, $"step {step}: edges hold {holding} slots of 10");
        }
    }

    [Fact]
    public void Exchange_DeadEdge_ItsSlotsAreReclaimedAfterItsLeaseExpires()
    {
        var state = CapacityState.Initial;
        (state, var a) = CapacityLogic.Exchange(state, Config, Backend, new EdgeId("a"), new BackendSlotDemand { Backend = Backend, Wanted = 10 }, Start);
        Assert.Equal(10, a.Slots);

        (state, var b) = CapacityLogic.Exchange(state, Config, Backend, new EdgeId("b"), new BackendSlotDemand { Backend = Backend, Wanted = 10 }, Start + TimeSpan.FromSeconds(4));
        Assert.Equal(0, b.Slots);

        (_, b) = CapacityLogic.Exchange(state, Config, Backend, new EdgeId("b"), new BackendSlotDemand { Backend = Backend, Wanted = 10, AppliedLeaseSequence = b.Sequence }, Start + TimeSpan.FromSeconds(5));
        Assert.Equal(10, b.Slots);
    }

    [Fact]
    public void Exchange_BackendWithoutLimit_GrantsUnlimited()
    {
        var (_, lease) = CapacityLogic.Exchange(CapacityState.Initial, Config, new BackendId("other"), new EdgeId("a"), new BackendSlotDemand { Backend = new BackendId("other"), Wanted = 3 }, Start);

        Assert.True(lease.Unlimited);
    }
}
