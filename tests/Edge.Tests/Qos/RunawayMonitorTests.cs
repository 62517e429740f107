using MProxy.Abstractions;
using MProxy.Edge.Qos;
using MProxy.TestSupport;

namespace MProxy.Edge.Tests.Qos;

public sealed class RunawayMonitorTests
{
    private const int Tenant = 7;
    private const ulong Fingerprint = 0xabcdef;
    private readonly ManualTimeProvider _time = new();

    private RunawayMonitor Monitor(params RunawayRuleConfig[] rules) =>
        new(new RunawayConfig { Rules = rules }, _time);

    private static RunawayRuleConfig Rule(RunawayAction action, bool shadow = false) => new()
    {
        Name = "slow",
        MaxElapsed = TimeSpan.FromSeconds(30),
        MaxRuPerExecution = 10_000,
        Action = action,
        Shadow = shadow,
        Watch = TimeSpan.FromMinutes(10),
        ThrottleMaxConcurrent = 2,
    };

    private RunawayHit Exceed(RunawayMonitor monitor, ulong fingerprint = Fingerprint, int tenant = Tenant, string name = "shop")
    {
        ulong fired = 0;
        return monitor.Evaluate(tenant, name, fingerprint, ru: 100, elapsed: TimeSpan.FromSeconds(31), final: false, ref fired);
    }

    [Fact]
    public void Evaluate_BelowBothThresholds_FiresNothing()
    {
        var monitor = Monitor(Rule(RunawayAction.Cancel));
        ulong fired = 0;

        var hit = monitor.Evaluate(Tenant, "shop", Fingerprint, 9_999, TimeSpan.FromSeconds(30), false, ref fired);

        Assert.False(hit.Fired);
        Assert.Equal(0UL, fired);
        Assert.Equal(0, monitor.VerdictCount);
    }

    [Fact]
    public void Evaluate_RuOverThreshold_FiresWithTheRuLimit()
    {
        var monitor = Monitor(Rule(RunawayAction.Cancel));
        ulong fired = 0;

        var hit = monitor.Evaluate(Tenant, "shop", Fingerprint, 10_001, TimeSpan.FromSeconds(1), false, ref fired);

        Assert.True(hit.Cancel);
        Assert.Equal(QosLimitUnit.Ru, hit.Unit);
        Assert.Equal(10_000, hit.Limit);
        Assert.Equal(10_001, hit.Observed);
    }

    [Fact]
    public void Evaluate_CancelRule_CancelsTheRunningQueryAndRejectsLaterOnesUntilTheWatchEnds()
    {
        var monitor = Monitor(Rule(RunawayAction.Cancel));

        var hit = Exceed(monitor);

        Assert.True(hit.Cancel);
        Assert.Equal(QosLimitUnit.Milliseconds, hit.Unit);
        Assert.Equal(1, monitor.Counters[0].Cancelled);
        var admission = monitor.Admit(Tenant, Fingerprint, 1, enforceThrottle: true);
        Assert.Equal(RunawayEffect.Reject, admission.Effect);
        Assert.Equal(QosRejectReason.RunawayRejected, admission.RejectReason);
        Assert.Equal(TimeSpan.FromMinutes(10), admission.RetryAfter);
        Assert.Equal(RunawayEffect.None, monitor.Admit(Tenant, Fingerprint + 1, 1, true).Effect);
        Assert.Equal(RunawayEffect.None, monitor.Admit(Tenant + 1, Fingerprint, 1, true).Effect);

        _time.Advance(TimeSpan.FromMinutes(10));
        Assert.Equal(RunawayEffect.None, monitor.Admit(Tenant, Fingerprint, 1, true).Effect);
        monitor.Sweep();
        Assert.Equal(0, monitor.VerdictCount);
    }

    [Fact]
    public void Evaluate_ShadowCancelRule_ReportsButNeitherCancelsNorRejects()
    {
        var monitor = Monitor(Rule(RunawayAction.Cancel, shadow: true));

        var hit = Exceed(monitor);

        Assert.True(hit.Fired);
        Assert.True(hit.Shadow);
        Assert.False(hit.Cancel);
        var admission = monitor.Admit(Tenant, Fingerprint, 1, true);
        Assert.Equal(RunawayEffect.Report, admission.Effect);
        Assert.Equal("slow", admission.Verdict!.Rule.Name);
        Assert.Equal(2, monitor.Counters[0].Shadowed);
        Assert.Equal(0, monitor.Counters[0].Cancelled);
        Assert.Equal(0, monitor.Counters[0].Rejected);
    }

    [Fact]
    public void Evaluate_DryRunRule_PlacesAVerdictThatOnlyReports()
    {
        var monitor = Monitor(Rule(RunawayAction.DryRun));

        var hit = Exceed(monitor);

        Assert.False(hit.Cancel);
        Assert.Equal(RunawayEffect.Report, monitor.Admit(Tenant, Fingerprint, 1, true).Effect);
        Assert.Equal(1, monitor.Counters[0].Triggered);
        Assert.Equal(1, monitor.Counters[0].Reported);
    }

    [Fact]
    public void Admit_DeprioritizeVerdict_LowersThePriority()
    {
        var monitor = Monitor(Rule(RunawayAction.Deprioritize) with { DeprioritizeTo = Priority.Medium });
        Exceed(monitor);

        var admission = monitor.Admit(Tenant, Fingerprint, 1, true);

        Assert.Equal(RunawayEffect.Deprioritize, admission.Effect);
        Assert.Equal(Priority.Medium, admission.Priority);
        Assert.Equal(1, monitor.Counters[0].Deprioritized);
    }

    [Fact]
    public void Admit_ThrottleVerdict_CapsConcurrentExecutions()
    {
        var monitor = Monitor(Rule(RunawayAction.Throttle));
        Exceed(monitor);

        var first = monitor.Admit(Tenant, Fingerprint, 1, true);
        var second = monitor.Admit(Tenant, Fingerprint, 1, true);
        var third = monitor.Admit(Tenant, Fingerprint, 1, true);

        Assert.Equal(RunawayEffect.Throttled, first.Effect);
        Assert.Equal(RunawayEffect.Throttled, second.Effect);
        Assert.Equal(RunawayEffect.Reject, third.Effect);
        Assert.Equal(QosRejectReason.RunawayThrottled, third.RejectReason);
        Assert.Equal(QosLimitUnit.Queries, third.Unit);
        Assert.Equal(RunawayMonitor.ThrottleRetryAfter, third.RetryAfter);
        RunawayMonitor.Exit(first.Verdict!);
        Assert.Equal(RunawayEffect.Throttled, monitor.Admit(Tenant, Fingerprint, 1, true).Effect);
        Assert.Equal(2, first.Verdict!.InFlight);
    }

    [Fact]
    public void Admit_ThrottleInsideATransaction_OnlyReports()
    {
        var monitor = Monitor(Rule(RunawayAction.Throttle) with { ThrottleMaxConcurrent = 1 });
        Exceed(monitor);
        monitor.Admit(Tenant, Fingerprint, 1, true);

        var admission = monitor.Admit(Tenant, Fingerprint, 1, enforceThrottle: false);

        Assert.Equal(RunawayEffect.Report, admission.Effect);
    }

    [Fact]
    public void Admit_ThrottleWithRuRate_RefusesOnceTheRateIsSpent()
    {
        var monitor = Monitor(Rule(RunawayAction.Throttle) with { ThrottleMaxConcurrent = 0, ThrottleRuPerSecond = 10 });
        Exceed(monitor);

        var first = monitor.Admit(Tenant, Fingerprint, 6, true);   // 10 → 4
        var second = monitor.Admit(Tenant, Fingerprint, 6, true);  // 4 → -2
        var third = monitor.Admit(Tenant, Fingerprint, 6, true);

        Assert.Equal(RunawayEffect.Throttled, first.Effect);
        Assert.Equal(RunawayEffect.Throttled, second.Effect);
        Assert.Equal(RunawayEffect.Reject, third.Effect);
        Assert.Equal(QosLimitUnit.RuPerSecond, third.Unit);
        Assert.Equal(TimeSpan.FromMilliseconds(200), third.RetryAfter);
        _time.Advance(TimeSpan.FromMilliseconds(200));
        Assert.Equal(RunawayEffect.Throttled, monitor.Admit(Tenant, Fingerprint, 6, true).Effect);
    }

    [Fact]
    public void Evaluate_RuleForAnotherTenantOrFingerprint_DoesNotFire()
    {
        var monitor = Monitor(
            Rule(RunawayAction.Cancel) with { Name = "t", Tenant = "reports" },
            Rule(RunawayAction.Cancel) with { Name = "f", Fingerprint = 42 });

        Assert.False(Exceed(monitor, fingerprint: 41, name: "shop").Fired);
        Assert.Equal("t", Exceed(monitor, fingerprint: 41, name: "reports").Rule!.Name);
        Assert.Equal("f", Exceed(monitor, fingerprint: 42, name: "shop").Rule!.Name);
    }

    [Fact]
    public void Evaluate_TenantScope_VerdictCoversEveryFingerprintOfTheTenant()
    {
        var monitor = Monitor(Rule(RunawayAction.Deprioritize) with { Scope = RunawayScope.Tenant });
        Exceed(monitor, fingerprint: 1);

        Assert.Equal(RunawayEffect.Deprioritize, monitor.Admit(Tenant, 999, 1, true).Effect);
        Assert.Equal(RunawayEffect.None, monitor.Admit(Tenant + 1, 999, 1, true).Effect);
    }

    [Fact]
    public void Evaluate_RepeatedTicksOfOneExecution_FireEachRuleOnce()
    {
        var monitor = Monitor(Rule(RunawayAction.Cancel));
        ulong fired = 0;

        var first = monitor.Evaluate(Tenant, "shop", Fingerprint, 1, TimeSpan.FromSeconds(31), false, ref fired);
        var second = monitor.Evaluate(Tenant, "shop", Fingerprint, 1, TimeSpan.FromSeconds(32), false, ref fired);

        Assert.True(first.Cancel);
        Assert.False(second.Fired);
        Assert.Equal(1, monitor.Counters[0].Triggered);
    }

    [Fact]
    public void Evaluate_TriggeredAgainDuringTheWatch_ExtendsTheVerdict()
    {
        var monitor = Monitor(Rule(RunawayAction.Deprioritize));
        Exceed(monitor);
        _time.Advance(TimeSpan.FromMinutes(8));

        Exceed(monitor);
        _time.Advance(TimeSpan.FromMinutes(8));

        Assert.Equal(RunawayEffect.Deprioritize, monitor.Admit(Tenant, Fingerprint, 1, true).Effect);
        _time.Advance(TimeSpan.FromMinutes(2));
        Assert.Equal(RunawayEffect.None, monitor.Admit(Tenant, Fingerprint, 1, true).Effect);
    }

    [Fact]
    public void Evaluate_StrongerRuleFires_ReplacesTheWeakerVerdict()
    {
        var monitor = Monitor(
            Rule(RunawayAction.Deprioritize) with { Name = "soft", MaxElapsed = TimeSpan.FromSeconds(1) },
            Rule(RunawayAction.Cancel) with { Name = "hard", MaxElapsed = TimeSpan.FromMinutes(5) });
        ulong fired = 0;
        monitor.Evaluate(Tenant, "shop", Fingerprint, 1, TimeSpan.FromSeconds(2), false, ref fired);
        Assert.Equal(RunawayEffect.Deprioritize, monitor.Admit(Tenant, Fingerprint, 1, true).Effect);

        var hit = monitor.Evaluate(Tenant, "shop", Fingerprint, 1, TimeSpan.FromMinutes(6), false, ref fired);

        Assert.Equal("hard", hit.Rule!.Name);
        Assert.Equal(RunawayEffect.Reject, monitor.Admit(Tenant, Fingerprint, 1, true).Effect);
        Assert.Equal(1, monitor.VerdictCount);
    }

    [Fact]
    public void Evaluate_FinalCostOverThreshold_PlacesAVerdictWithoutCancelling()
    {
        var monitor = Monitor(Rule(RunawayAction.Cancel));
        ulong fired = 0;

        var hit = monitor.Evaluate(Tenant, "shop", Fingerprint, 20_000, TimeSpan.FromSeconds(1), final: true, ref fired);

        Assert.True(hit.Fired);
        Assert.False(hit.Cancel);
        Assert.Equal(RunawayEffect.Reject, monitor.Admit(Tenant, Fingerprint, 1, true).Effect);
    }

    [Fact]
    public void Evaluate_TableFull_DropsNewVerdictsUntilOldOnesLapse()
    {
        var monitor = new RunawayMonitor(new RunawayConfig { Rules = [Rule(RunawayAction.Deprioritize)], MaxVerdicts = 2 }, _time);

        Exceed(monitor, fingerprint: 1);
        Exceed(monitor, fingerprint: 2);
        Exceed(monitor, fingerprint: 3);

        Assert.Equal(2, monitor.VerdictCount);
        Assert.Equal(1, monitor.VerdictsDropped);
        Assert.Equal(RunawayEffect.None, monitor.Admit(Tenant, 3, 1, true).Effect);
        _time.Advance(TimeSpan.FromMinutes(10));
        Exceed(monitor, fingerprint: 3);
        Assert.Equal(1, monitor.VerdictCount);
        Assert.Equal(RunawayEffect.Deprioritize, monitor.Admit(Tenant, 3, 1, true).Effect);
    }

    [Fact]
    public void Place_VerdictFromThePolicyTier_AppliesAtAdmission()
    {
        var monitor = Monitor();

        monitor.Place(new RunawayRuleConfig { Name = "silo", Action = RunawayAction.Cancel, Watch = TimeSpan.FromSeconds(30) }, Tenant, "shop", Fingerprint);

        Assert.Equal(RunawayEffect.Reject, monitor.Admit(Tenant, Fingerprint, 1, true).Effect);
        Assert.Single(monitor.GetVerdicts());
    }
}
