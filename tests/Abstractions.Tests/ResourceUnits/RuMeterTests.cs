using MProxy.Abstractions.ResourceUnits;

namespace MProxy.Abstractions.Tests.ResourceUnits;

public sealed class RuMeterTests
{
    private const double Tolerance = 1e-6;

    [Fact]
    public void Start_ReadAndWrite_ChargesTheBase()
    {
        var meter = new RuMeter();

        Assert.Equal(1, meter.Start(RuWeights.Default, RuKind.Read));
        Assert.Equal(6, meter.Start(RuWeights.Default, RuKind.Write));
        Assert.True(meter.IsRunning);
    }

    [Fact]
    public void Advance_LatencyOnly_ChargesWhileStillRunning()
    {
        var meter = new RuMeter();
        meter.Start(RuWeights.Default, RuKind.Read);

        var first = meter.Advance(TimeSpan.FromSeconds(1), 0, 0);
        var second = meter.Advance(TimeSpan.FromSeconds(3), 0, 0);

        Assert.Equal(500, first, Tolerance);
        Assert.Equal(1000, second, Tolerance);
        Assert.Equal(1 + 1500, meter.Charged, Tolerance);
    }

    [Fact]
    public void Advance_TotalsGoBackwards_ChargesNothing()
    {
        var meter = new RuMeter();
        meter.Start(RuWeights.Default, RuKind.Read);
        meter.Advance(TimeSpan.FromMilliseconds(10), 8192, 100);

        var delta = meter.Advance(TimeSpan.FromMilliseconds(5), 10, 10);

        Assert.Equal(0, delta);
    }

    [Fact]
    public void Advance_NotStarted_ChargesNothing()
    {
        var meter = new RuMeter();

        Assert.Equal(0, meter.Advance(TimeSpan.FromSeconds(1), 1000, 1000));
        Assert.False(meter.IsRunning);
    }

    [Fact]
    public void Advance_AnySplitOfTheSameTotals_SumsToTheClosedFormula()
    {
        var random = new Random(1234);
        var weights = new RuWeights { ReadPerByte = 0.002, WritePer4KiB = 3, LatencyPerMs = 0.25 };
        for (var run = 0; run < 200; run++)
        {
            var kind = random.Next(2) == 0 ? RuKind.Read : RuKind.Write;
            var meter = new RuMeter();
            var sum = meter.Start(weights, kind);
            long read = 0, written = 0;
            var elapsed = TimeSpan.Zero;
            var steps = random.Next(1, 30);
            for (var i = 0; i < steps; i++)
            {
                read += random.Next(0, 100_000);
                written += random.Next(0, 10_000);
                elapsed += TimeSpan.FromTicks(random.Next(0, 50_000_000));
                sum += meter.Advance(elapsed, read, written);
            }

            var expected = RuFormula.Cost(weights, kind, read, written, elapsed.TotalMilliseconds);
            Assert.Equal(expected, sum, Tolerance);
            Assert.Equal(expected, meter.Stop(), Tolerance);
        }
    }

    [Fact]
    public void Stop_ThenAdvance_NoLongerCharges()
    {
        var meter = new RuMeter();
        meter.Start(RuWeights.Default, RuKind.Write);
        meter.Advance(TimeSpan.FromMilliseconds(2), 0, 4096);

        var total = meter.Stop();

        Assert.Equal(6 + 1 + 2, total, Tolerance);
        Assert.Equal(0, meter.Advance(TimeSpan.FromSeconds(10), 0, 0));
    }
}
