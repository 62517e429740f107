using MProxy.Edge.Qos;

namespace MProxy.Edge.Tests.Qos;

public sealed class FingerprintStatsTests
{
    private const double Tolerance = 1e-6;

    [Fact]
    public void Record_SameFingerprint_AccumulatesCountTotalsAndMaxima()
    {
        var stats = new FingerprintStats(10);

        stats.Record(1, "shop", 42, ru: 3, latencyMs: 2);
        stats.Record(1, "shop", 42, ru: 7, latencyMs: 1);
        stats.Record(2, "other", 42, ru: 100, latencyMs: 50);

        var (top, others) = stats.Snapshot();
        var shop = Assert.Single(top, c => c.Tenant == "shop");
        Assert.Equal(2, shop.Count);
        Assert.Equal(10, shop.TotalRu, Tolerance);
        Assert.Equal(3, shop.TotalLatencyMs, Tolerance);
        Assert.Equal(7, shop.MaxRu, Tolerance);
        Assert.Equal(2, shop.MaxLatencyMs, Tolerance);
        Assert.Equal("other", top[0].Tenant); // heaviest first
        Assert.Equal(0, others.Count);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(4)]
    public void Record_ChurnOfLightFingerprints_KeepsTheHeavyOnesAndAggregatesTheRest(int shards)
    {
        var stats = new FingerprintStats(capacity: 16, shards);
        var random = new Random(3);
        long count = 0;
        double total = 0;
        for (var i = 0; i < 20_000; i++)
        {
            if (i % 10 == 0)
            {
                var heavy = (ulong)random.Next(1, 6); // five heavy shapes
                stats.Record(1, "shop", heavy, 50, 10);
                total += 50;
            }
            else
            {
                stats.Record(1, "shop", 1_000 + (ulong)i, 1, 1); // every light one is new
                total += 1;
            }
            count++;
        }

        var (top, others) = stats.Snapshot();

        Assert.True(top.Count <= 16);
        for (ulong heavy = 1; heavy <= 5; heavy++)
            Assert.Contains(top, c => c.Fingerprint == heavy);
        long topCount = 0;
        double topRu = 0;
        foreach (var c in top)
        {
            topCount += c.Count;
            topRu += c.TotalRu;
        }
        Assert.Equal(count, topCount + others.Count);
        Assert.Equal(total, topRu + others.TotalRu, 1e-3);
        Assert.Equal("*", others.Tenant);
    }

    [Fact]
    public void Record_KnownFingerprint_DoesNotAllocate()
    {
        var stats = new FingerprintStats(100);
        stats.Record(1, "shop", 42, 1, 1);

        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 1000; i++)
            stats.Record(1, "shop", 42, 1, 1);

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }
}
