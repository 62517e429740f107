using MProxy.Edge.Telemetry;
using MProxy.TestSupport;

namespace MProxy.Edge.Tests.Telemetry;

public sealed class StripedCountersTests
{
    [Fact]
    public void Add_FromManyThreadsAtOnce_EverySlotTotalsExactly()
    {
        var counters = new StripedCounters(3);
        const int threads = 8;
        const int perThread = 50_000;

        Concurrently.Run(threads, () =>
        {
            for (var i = 0; i < perThread; i++)
            {
                counters.Increment(0);
                counters.Add(1, 3);
                if ((i & 1) == 0)
                    counters.Add(2, -1);
            }
        });

        Assert.Equal(threads * perThread, counters.Read(0));
        Assert.Equal(3L * threads * perThread, counters.Read(1));
        Assert.Equal(-threads * perThread / 2, counters.Read(2));
    }

    [Fact]
    public void AddDouble_FromManyThreadsAtOnce_LosesNoAddition()
    {
        var counters = new StripedCounters(2);
        const int threads = 8;
        const int perThread = 20_000;

        Concurrently.Run(threads, () =>
        {
            for (var i = 0; i < perThread; i++)
                counters.AddDouble(1, 0.25); // exact in binary: any lost update shows
        });

        Assert.Equal(threads * perThread * 0.25, counters.ReadDouble(1));
        Assert.Equal(0, counters.Read(0));
    }

    [Fact]
    public void Slots_AreIndependentAndBounded()
    {
        var counters = new StripedCounters(2);
        counters.Add(0, 5);
        counters.AddDouble(1, 1.5);

        Assert.Equal(5, counters.Read(0));
        Assert.Equal(1.5, counters.ReadDouble(1));
        Assert.Throws<ArgumentOutOfRangeException>(() => counters.Increment(2));
        Assert.Throws<ArgumentOutOfRangeException>(() => counters.Read(-1));
        Assert.Throws<ArgumentOutOfRangeException>(() => new StripedCounters(0));
    }
}
