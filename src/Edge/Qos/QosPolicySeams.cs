using MProxy.Abstractions;
using MProxy.Edge.Policy;
using PolicyAction = MProxy.Abstractions.Policy.RunawayAction;
using PolicyVerdict = MProxy.Abstractions.Policy.RunawayVerdict;

namespace MProxy.Edge.Qos;

/// <summary>
/// The policy tier's seams the gate consumes (all optional; embedded or cluster mode give the same
/// <c>PolicyClient</c> for all three):
/// <list type="bullet">
/// <item><see cref="Allowance"/>: each tenant's leased rate and burst, applied to its home group's
/// bucket by <see cref="QosGate.Tick"/> whenever the allowance's version changes (an unlimited tenant,
/// or one the tier has not spoken about, keeps the group's local settings);</item>
/// <item><see cref="Verdicts"/>: global runaway verdicts, imported into the local
/// <see cref="RunawayMonitor"/> the first time an admission meets one, so later admissions find it locally;</item>
/// <item><see cref="Usage"/>: RU charged (at admission and every tick), refusals, debt and executions,
/// batched by the client into its next exchange.</item>
/// </list>
/// </summary>
internal sealed record QosPolicySeams(ITenantAllowance? Allowance = null, IRunawayVerdicts? Verdicts = null, IPolicyUsageSink? Usage = null)
{
    /// <summary>Name of the rule a global verdict is imported under (messages say "runaway rule 'policy'").</summary>
    public const string PolicyRuleName = "policy";

    /// <summary>The local rule standing for a global verdict, valid until it expires; null for none or lapsed.</summary>
    internal static RunawayRuleConfig? ToRule(PolicyVerdict verdict, DateTimeOffset now)
    {
        var watch = verdict.ExpiresAt - now;
        if (watch <= TimeSpan.Zero)
            return null;
        return verdict.Action switch
        {
            PolicyAction.Deprioritize => new RunawayRuleConfig { Name = PolicyRuleName, Action = RunawayAction.Deprioritize, DeprioritizeTo = Priority.Low, Watch = watch },
            PolicyAction.Throttle => new RunawayRuleConfig { Name = PolicyRuleName, Action = RunawayAction.Throttle, ThrottleRuPerSecond = Math.Max(verdict.ThrottleRuPerSecond, 1e-3), Watch = watch },
            PolicyAction.Reject => new RunawayRuleConfig { Name = PolicyRuleName, Action = RunawayAction.Cancel, Watch = watch },
            _ => null,
        };
    }
}
