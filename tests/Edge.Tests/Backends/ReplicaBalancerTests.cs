using MProxy.Edge.Backends;
using MProxy.TestSupport;

namespace MProxy.Edge.Tests.Backends;

public sealed class ReplicaBalancerTests
{
    private static ReplicaBalancer Balancer(ManualTimeProvider time, int backends, int seed = 42) =>
        new(backends, TimeSpan.FromSeconds(10), time, new Random(seed));

    private static void Complete(ReplicaBalancer balancer, ManualTimeProvider time, int backend, double latencyMs)
    {
        var started = balancer.Start(backend);
        time.Advance(TimeSpan.FromMilliseconds(latencyMs));
        balancer.End(backend, started);
    }

    [Fact]
    public void Pick_NoEligibleReplica_ReturnsMinusOne()
    {
        var balancer = Balancer(new ManualTimeProvider(), 3);
        Assert.Equal(-1, balancer.Pick(TopologyBuilder.Build([100, 100], ineligible: [1, 2]), Lsn.None));
        Assert.Equal(-1, balancer.Pick(TopologyBuilder.Build([]), Lsn.None));
    }

    [Fact]
    public void Pick_OneEligibleReplica_ReturnsIt()
    {
        var balancer = Balancer(new ManualTimeProvider(), 3);
        var topology = TopologyBuilder.Build([100, 100], ineligible: [1]);
        for (var i = 0; i < 20; i++)
            Assert.Equal(2, balancer.Pick(topology, Lsn.None));
    }

    [Fact]
    public void Pick_TwoReplicas_PrefersFewerInFlight()
    {
        var balancer = Balancer(new ManualTimeProvider(), 3);
        var topology = TopologyBuilder.Build([100, 100]);
        balancer.Start(1);
        balancer.Start(1);
        for (var i = 0; i < 50; i++)
            Assert.Equal(2, balancer.Pick(topology, Lsn.None));
        Assert.Equal(2, balancer.InFlight(1));
        Assert.Equal(0, balancer.InFlight(2));
    }

    [Fact]
    public void Pick_TwoIdleReplicas_PrefersLowerLatency()
    {
        var time = new ManualTimeProvider();
        var balancer = Balancer(time, 3);
        Complete(balancer, time, 1, 80);
        Complete(balancer, time, 2, 5);
        var topology = TopologyBuilder.Build([100, 100]);
        for (var i = 0; i < 50; i++)
            Assert.Equal(2, balancer.Pick(topology, Lsn.None));
    }

    [Fact]
    public void Pick_SlowReplicaWithFewerInFlight_ScoreCombinesBoth()
    {
        var time = new ManualTimeProvider();
        var balancer = Balancer(time, 3);
        Complete(balancer, time, 1, 10); // fast
        Complete(balancer, time, 2, 40); // four times slower
        var topology = TopologyBuilder.Build([100, 100]);
        balancer.Start(1);
        balancer.Start(1);
        Assert.Equal(1, balancer.Pick(topology, Lsn.None)); // (2+1)·10 = 30 < (0+1)·40
        balancer.Start(1);
        balancer.Start(1);
        Assert.Equal(2, balancer.Pick(topology, Lsn.None)); // (4+1)·10 = 50 > 40
    }

    [Fact]
    public void Pick_EqualReplicas_SpreadsEvenlyAndDeterministically()
    {
        static int[] Run(int seed)
        {
            var balancer = Balancer(new ManualTimeProvider(), 5, seed);
            var topology = TopologyBuilder.Build([100, 100, 100, 100]);
            var counts = new int[5];
            for (var i = 0; i < 40_000; i++)
                counts[balancer.Pick(topology, Lsn.None)]++;
            return counts;
        }
        var counts = Run(2026);
        Assert.Equal(0, counts[0]); // the primary is never a candidate
        for (var i = 1; i <= 4; i++)
            Assert.InRange(counts[i], 9_200, 10_800);
        Assert.Equal(counts, Run(2026));
    }

    [Fact]
    public void Pick_OneSlowReplicaAmongThree_SlowOneNeverWins()
    {
        var time = new ManualTimeProvider();
        var balancer = Balancer(time, 4, seed: 3);
        Complete(balancer, time, 1, 5);
        Complete(balancer, time, 2, 5);
        Complete(balancer, time, 3, 200);
        var topology = TopologyBuilder.Build([100, 100, 100]);
        var counts = new int[4];
        for (var i = 0; i < 9_000; i++)
            counts[balancer.Pick(topology, Lsn.None)]++;
        Assert.Equal(0, counts[3]);
        Assert.InRange(counts[1], 4_000, 5_000);
        Assert.InRange(counts[2], 4_000, 5_000);
    }

    [Fact]
    public void Pick_WithToken_OnlyReplicasThatReplayedIt()
    {
        var balancer = Balancer(new ManualTimeProvider(), 5);
        var topology = TopologyBuilder.Build([100, 500, 499, 900]);
        var seen = new HashSet<int>();
        for (var i = 0; i < 200; i++)
            seen.Add(balancer.Pick(topology, new Lsn(500)));
        Assert.Equal([2, 4], seen.Order());
        Assert.Equal(-1, balancer.Pick(topology, new Lsn(901)));
    }

    [Fact]
    public void End_LatencyAverage_DecaysWithTime()
    {
        var time = new ManualTimeProvider();
        var balancer = Balancer(time, 2);
        Assert.Null(balancer.LatencyMs(1));
        Complete(balancer, time, 1, 100);
        Assert.Equal(100, balancer.LatencyMs(1));

        time.Advance(TimeSpan.FromSeconds(10) - TimeSpan.FromMilliseconds(10)); // one time constant after the first sample ended
        Complete(balancer, time, 1, 10);

        Assert.Equal((100 * Math.Exp(-1)) + (10 * (1 - Math.Exp(-1))), balancer.LatencyMs(1)!.Value, 6);
        time.Advance(TimeSpan.FromMinutes(10));
        Complete(balancer, time, 1, 10);
        Assert.Equal(10, balancer.LatencyMs(1)!.Value, 3);
    }

    [Fact]
    public void PickStartEnd_SteadyState_DoNotAllocate()
    {
        var time = new ManualTimeProvider();
        var balancer = Balancer(time, 5);
        var topology = TopologyBuilder.Build([100, 200, 300, 400]);
        for (var i = 0; i < 10; i++)
        {
            var warm = balancer.Pick(topology, new Lsn(150));
            balancer.End(warm, balancer.Start(warm));
        }

        var before = GC.GetAllocatedBytesForCurrentThread();
        var sum = 0;
        for (var i = 0; i < 100; i++)
        {
            var pick = balancer.Pick(topology, new Lsn(150));
            var started = balancer.Start(pick);
            balancer.End(pick, started);
            sum += pick;
        }
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
        Assert.InRange(sum, 200, 400);
    }
}
