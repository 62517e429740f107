using MProxy.Abstractions.Policy;
using MProxy.Grains.Fingerprints;

namespace MProxy.Grains.Tests.Fingerprints;

public sealed class FingerprintLogicTests
{
    private static readonly TenantId Tenant = new("acme");
    private static readonly FingerprintId Shape = new(0xfeedUL);
    private static readonly DateTimeOffset Start = new(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);

    private static readonly RunawayPolicy Policy = new()
    {
        MinExecutions = 5,
        HalfLife = TimeSpan.FromSeconds(10),
        VerdictTtl = TimeSpan.FromSeconds(30),
        Deprioritize = new RunawayThreshold(100, null),
        Throttle = new RunawayThreshold(500, null),
        Reject = new RunawayThreshold(null, 5000),
        ThrottleRuPerSecond = 20,
    };

    private static FingerprintCostReport Report(long count, double ruEach, double msEach) => new()
    {
        Tenant = Tenant,
        Fingerprint = Shape,
        Count = count,
        TotalRu = count * ruEach,
        TotalLatencyMs = count * msEach,
        MaxRu = ruEach,
        MaxLatencyMs = msEach,
        Sample = "SELECT * FROM t WHERE x = $1",
    };

    [Fact]
    public void Report_ReportsFromTwoEdgesTogetherCrossThreshold_VerdictIsGlobal()
    {
        var (state, verdict) = FingerprintLogic.Report(FingerprintState.Initial, Policy, Tenant, Shape, new EdgeId("a"), Report(3, 600, 10), Start);
        Assert.Null(verdict);

        (state, verdict) = FingerprintLogic.Report(state, Policy, Tenant, Shape, new EdgeId("b"), Report(3, 600, 10), Start);

        Assert.NotNull(verdict);
        Assert.Equal(RunawayAction.Throttle, verdict.Action);
        Assert.Equal(20, verdict.ThrottleRuPerSecond);
        Assert.Equal(Start + Policy.VerdictTtl, verdict.ExpiresAt);
        Assert.Equal(2, FingerprintLogic.View(state, Policy, Tenant, Shape, Start).Edges);
    }

    [Theory]
    [InlineData(50, 10, RunawayAction.None)]
    [InlineData(150, 10, RunawayAction.Deprioritize)]
    [InlineData(600, 10, RunawayAction.Throttle)]
    [InlineData(150, 6000, RunawayAction.Reject)]
    public void Report_Thresholds_StrictestCrossedActionWins(double ruEach, double msEach, RunawayAction expected)
    {
        var (_, verdict) = FingerprintLogic.Report(FingerprintState.Initial, Policy, Tenant, Shape, new EdgeId("a"), Report(10, ruEach, msEach), Start);

        Assert.Equal(expected, verdict?.Action ?? RunawayAction.None);
    }

    [Fact]
    public void Report_ShapeBecomesCheap_VerdictIsNotRenewedAndExpires()
    {
        var (state, verdict) = FingerprintLogic.Report(FingerprintState.Initial, Policy, Tenant, Shape, new EdgeId("a"), Report(10, 600, 10), Start);
        Assert.Equal(RunawayAction.Throttle, verdict!.Action);

        // Many cheap executions a few half-lives later pull the mean under every threshold.
        var later = Start + TimeSpan.FromSeconds(40);
        (state, verdict) = FingerprintLogic.Report(state, Policy, Tenant, Shape, new EdgeId("a"), Report(100, 1, 1), later);

        Assert.Null(verdict);
        Assert.Null(FingerprintLogic.View(state, Policy, Tenant, Shape, later).Verdict);
    }

    [Fact]
    public void Report_StillRunaway_VerdictIsRenewedWithLaterExpiry()
    {
        var (state, first) = FingerprintLogic.Report(FingerprintState.Initial, Policy, Tenant, Shape, new EdgeId("a"), Report(10, 600, 10), Start);
        var (_, renewed) = FingerprintLogic.Report(state, Policy, Tenant, Shape, new EdgeId("a"), Report(10, 600, 10), Start + TimeSpan.FromSeconds(20));

        Assert.True(renewed!.ExpiresAt > first!.ExpiresAt);
    }

    [Fact]
    public void View_AfterVerdictTtl_ShowsNoVerdict()
    {
        var (state, _) = FingerprintLogic.Report(FingerprintState.Initial, Policy, Tenant, Shape, new EdgeId("a"), Report(10, 600, 10), Start);

        Assert.NotNull(FingerprintLogic.View(state, Policy, Tenant, Shape, Start + TimeSpan.FromSeconds(29)).Verdict);
        Assert.Null(FingerprintLogic.View(state, Policy, Tenant, Shape, Start + TimeSpan.FromSeconds(30)).Verdict);
    }
}
