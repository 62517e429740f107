using System.Collections.Concurrent;
using MProxy.Abstractions;

namespace MProxy.Edge.Qos;

/// <summary>Key of a verdict: one tenant's fingerprint, or the whole tenant.</summary>
internal readonly record struct VerdictKey(int TenantId, ulong Fingerprint, bool TenantWide);

/// <summary>Counters of one runaway rule. Thread-safe (interlocked).</summary>
internal sealed class RunawayRuleCounters(string rule)
{
    private long _triggered;
    private long _cancelled;
    private long _shadowed;
    private long _rejected;
    private long _deprioritized;
    private long _throttled;
    private long _reported;

    public string Rule { get; } = rule;

    /// <summary>Executions that went over the rule's threshold.</summary>
    public long Triggered => Volatile.Read(ref _triggered);

    /// <summary>Running executions cancelled.</summary>
    public long Cancelled => Volatile.Read(ref _cancelled);

    /// <summary>Triggers and admissions where a shadow rule would have acted.</summary>
    public long Shadowed => Volatile.Read(ref _shadowed);

    /// <summary>Executions refused at admission (cancel verdict, or over a throttle).</summary>
    public long Rejected => Volatile.Read(ref _rejected);

    public long Deprioritized => Volatile.Read(ref _deprioritized);

    /// <summary>Executions admitted under a throttle.</summary>
    public long Throttled => Volatile.Read(ref _throttled);

    /// <summary>Admissions under a dry-run verdict (reported only).</summary>
    public long Reported => Volatile.Read(ref _reported);

    internal void CountTriggered() => Interlocked.Increment(ref _triggered);
    internal void CountCancelled() => Interlocked.Increment(ref _cancelled);
    internal void CountShadowed() => Interlocked.Increment(ref _shadowed);
    internal void CountRejected() => Interlocked.Increment(ref _rejected);
    internal void CountDeprioritized() => Interlocked.Increment(ref _deprioritized);
    internal void CountThrottled() => Interlocked.Increment(ref _throttled);
    internal void CountReported() => Interlocked.Increment(ref _reported);
}

/// <summary>
/// A verdict: what a rule decided about a tenant's fingerprint (or the whole tenant), until
/// <see cref="ExpiresAt"/>. Re-triggering by the same rule extends it. Thread-safe.
/// </summary>
internal sealed class RunawayVerdict
{
    private long _expiresAt;
    private int _inFlight;

    internal RunawayVerdict(RunawayRuleConfig rule, RunawayRuleCounters counters, VerdictKey key, string tenant, long expiresAt, RuBucket? rate)
    {
        Rule = rule;
        Counters = counters;
        Key = key;
        Tenant = tenant;
        _expiresAt = expiresAt;
        Rate = rate;
    }

    public RunawayRuleConfig Rule { get; }

    internal RunawayRuleCounters Counters { get; }

    public VerdictKey Key { get; }

    public string Tenant { get; }

    /// <summary>Timestamp (of the monitor's <see cref="TimeProvider"/>) when the verdict lapses.</summary>
    public long ExpiresAt => Volatile.Read(ref _expiresAt);

    /// <summary>Whether it changes anything (not dry-run, not shadow).</summary>
    public bool IsEnforced => !Rule.Shadow && Rule.Action != RunawayAction.DryRun;

    /// <summary>Executions admitted under a throttle and not yet finished.</summary>
    public int InFlight => Volatile.Read(ref _inFlight);

    /// <summary>The RU rate cap of a throttle, if it has one.</summary>
    internal RuBucket? Rate { get; }

    public bool IsActive(long now) => now < ExpiresAt;

    internal void Extend(long expiresAt)
    {
        var current = Volatile.Read(ref _expiresAt);
        while (expiresAt > current)
        {
            var seen = Interlocked.CompareExchange(ref _expiresAt, expiresAt, current);
            if (seen == current)
                return;
            current = seen;
        }
    }

    internal bool TryEnter(int max)
    {
        if (Interlocked.Increment(ref _inFlight) <= max)
            return true;
        Interlocked.Decrement(ref _inFlight);
        return false;
    }

    internal void Exit() => Interlocked.Decrement(ref _inFlight);

    /// <summary>Ordering of verdicts: enforced beats shadow/dry-run, then cancel &gt; throttle &gt; deprioritize.</summary>
    internal static int Strength(RunawayRuleConfig rule) =>
        (rule.Shadow || rule.Action == RunawayAction.DryRun ? 0 : 10) + (int)rule.Action;
}

/// <summary>What runaway verdicts did to a query at admission.</summary>
internal enum RunawayEffect
{
    None = 0,

    /// <summary>A dry-run or shadow verdict matched: report, change nothing.</summary>
    Report,

    /// <summary>Run at <see cref="RunawayAdmission.Priority"/>.</summary>
    Deprioritize,

    /// <summary>Admitted under a throttle; the query holds a place in it until it completes.</summary>
    Throttled,

    /// <summary>Refused: cancel verdict (57014) or over a throttle (53400).</summary>
    Reject,
}

/// <summary>The runaway decision at admission.</summary>
internal readonly record struct RunawayAdmission(RunawayEffect Effect, RunawayVerdict? Verdict, Priority Priority, TimeSpan RetryAfter, QosRejectReason RejectReason, double Limit, QosLimitUnit Unit);

/// <summary>A rule that fired while (or when) a query ran: its verdict and whether to cancel the query now.</summary>
internal readonly record struct RunawayHit(RunawayRuleConfig? Rule, RunawayVerdict? Verdict, bool Cancel, bool Shadow, double Observed, double Limit, QosLimitUnit Unit)
{
    public bool Fired => Rule is not null;
}

/// <summary>
/// Runaway-query rules (<see cref="RunawayRuleConfig"/>): evaluated while a query runs (every charge
/// tick, and at completion) against its RU and elapsed time so far, placing verdicts per tenant
/// fingerprint (or tenant) that hold for the rule's watch; and checked at admission for active
/// verdicts. Shadow rules and dry-run verdicts decide and report but change nothing. Verdicts from
/// the policy tier enter through <see cref="Place"/>.
/// </summary>
/// <remarks>
/// Thread-safe. Admission reads the verdict table lock-free (and skips it entirely while it is
/// empty); placing and sweeping verdicts take one lock — rare events. The table holds at most
/// <see cref="RunawayConfig.MaxVerdicts"/> verdicts; past it, new verdicts are dropped and counted
/// (<see cref="VerdictsDropped"/>). Per-query methods do not allocate; placing a verdict does.
/// </remarks>
internal sealed class RunawayMonitor
{
    /// <summary>Retry-after given to executions refused by a concurrency throttle.</summary>
    public static readonly TimeSpan ThrottleRetryAfter = TimeSpan.FromSeconds(1);

    private readonly TimeProvider _time;
    private readonly ConcurrentDictionary<VerdictKey, RunawayVerdict> _verdicts = new();
    private readonly Lock _writeLock = new();
    private volatile RuleSet _rules;
    private int _count;
    private long _dropped;

    public RunawayMonitor(RunawayConfig config, TimeProvider time)
    {
        _time = time;
        _rules = new RuleSet(config);
    }

    public IReadOnlyList<RunawayRuleConfig> Rules => _rules.Config.Rules;

    /// <summary>Counters per rule, in rule order.</summary>
    public IReadOnlyList<RunawayRuleCounters> Counters => _rules.Counters;

    /// <summary>Verdicts in the table (active or awaiting the next sweep).</summary>
    public int VerdictCount => Volatile.Read(ref _count);

    /// <summary>Verdicts not placed because the table was full.</summary>
    public long VerdictsDropped => Volatile.Read(ref _dropped);

    /// <summary>New rules from a reload; verdicts already placed keep their rule until they lapse. Counters restart.</summary>
    public void Reconfigure(RunawayConfig config) => _rules = new RuleSet(config);

    /// <summary>
    /// Active verdicts for a new execution of <paramref name="fingerprint"/> by the tenant
    /// <paramref name="tenantId"/>; the strongest applies. A throttle admits by taking a place (the
    /// caller gives it back with <see cref="Exit"/> when the query completes) and charging
    /// <paramref name="baseCost"/> to the throttle's RU rate; with <paramref name="enforceThrottle"/>
    /// false (a statement inside an open transaction) a throttle only reports.
    /// </summary>
    public RunawayAdmission Admit(int tenantId, ulong fingerprint, double baseCost, bool enforceThrottle)
    {
        if (Volatile.Read(ref _count) == 0)
            return default;
        var now = _time.GetTimestamp();
        RunawayVerdict? verdict = null;
        if (_verdicts.TryGetValue(new VerdictKey(tenantId, fingerprint, false), out var byFingerprint) && byFingerprint.IsActive(now))
            verdict = byFingerprint;
        if (_verdicts.TryGetValue(new VerdictKey(tenantId, 0, true), out var byTenant) && byTenant.IsActive(now)
            && (verdict is null || RunawayVerdict.Strength(byTenant.Rule) > RunawayVerdict.Strength(verdict.Rule)))
            verdict = byTenant;
        if (verdict is null)
            return default;

        var rule = verdict.Rule;
        if (!verdict.IsEnforced)
        {
            if (rule.Shadow)
                verdict.Counters.CountShadowed();
            else
                verdict.Counters.CountReported();
            return new RunawayAdmission(RunawayEffect.Report, verdict, default, default, default, 0, default);
        }
        switch (rule.Action)
        {
            case RunawayAction.Deprioritize:
                verdict.Counters.CountDeprioritized();
                return new RunawayAdmission(RunawayEffect.Deprioritize, verdict, rule.DeprioritizeTo, default, default, 0, default);
            case RunawayAction.Cancel:
                verdict.Counters.CountRejected();
                return new RunawayAdmission(RunawayEffect.Reject, verdict, default, _time.GetElapsedTime(now, verdict.ExpiresAt), QosRejectReason.RunawayRejected, 0, default);
            default: // Throttle
                if (!enforceThrottle)
                    return new RunawayAdmission(RunawayEffect.Report, verdict, default, default, default, 0, default);
                if (rule.ThrottleMaxConcurrent > 0 && !verdict.TryEnter(rule.ThrottleMaxConcurrent))
                {
                    verdict.Counters.CountRejected();
                    return new RunawayAdmission(RunawayEffect.Reject, verdict, default, ThrottleRetryAfter, QosRejectReason.RunawayThrottled, rule.ThrottleMaxConcurrent, QosLimitUnit.Queries);
                }
                if (rule.ThrottleMaxConcurrent == 0)
                    verdict.TryEnter(int.MaxValue);
                if (verdict.Rate is { } rate && !rate.TryAdmit(baseCost, out var retryAfter))
                {
                    verdict.Exit();
                    verdict.Counters.CountRejected();
                    return new RunawayAdmission(RunawayEffect.Reject, verdict, default, retryAfter, QosRejectReason.RunawayThrottled, rule.ThrottleRuPerSecond, QosLimitUnit.RuPerSecond);
                }
                verdict.Counters.CountThrottled();
                return new RunawayAdmission(RunawayEffect.Throttled, verdict, default, default, default, 0, default);
        }
    }

    /// <summary>Gives back the place a <see cref="RunawayEffect.Throttled"/> admission took.</summary>
    public static void Exit(RunawayVerdict verdict) => verdict.Exit();

    /// <summary>
    /// Checks a running (or, with <paramref name="final"/>, a finished) execution against the rules
    /// that have not fired for it yet (<paramref name="fired"/>, one bit per rule), places or extends
    /// verdicts for those it exceeds, and returns the strongest hit; <see cref="RunawayHit.Cancel"/>
    /// says to cancel the running execution now.
    /// </summary>
    public RunawayHit Evaluate(int tenantId, string tenant, ulong fingerprint, double ru, TimeSpan elapsed, bool final, ref ulong fired)
    {
        var rules = _rules;
        var configs = rules.Array;
        RunawayHit best = default;
        for (var i = 0; i < configs.Length; i++)
        {
            var bit = 1UL << i;
            if ((fired & bit) != 0)
                continue;
            var rule = configs[i];
            if (rule.Fingerprint is { } only && only != fingerprint)
                continue;
            if (rule.Tenant is { } name && !string.Equals(name, tenant, StringComparison.Ordinal))
                continue;
            double observed, limit;
            QosLimitUnit unit;
            if (rule.MaxElapsed > TimeSpan.Zero && elapsed > rule.MaxElapsed)
            {
                (observed, limit, unit) = (elapsed.TotalMilliseconds, rule.MaxElapsed.TotalMilliseconds, QosLimitUnit.Milliseconds);
            }
            else if (rule.MaxRuPerExecution > 0 && ru > rule.MaxRuPerExecution)
            {
                (observed, limit, unit) = (ru, rule.MaxRuPerExecution, QosLimitUnit.Ru);
            }
            else
            {
                continue;
            }

            fired |= bit;
            var counters = rules.Counters[i];
            counters.CountTriggered();
            var cancel = !final && rule.Action == RunawayAction.Cancel && !rule.Shadow;
            if (rule.Shadow)
                counters.CountShadowed();
            else if (cancel)
                counters.CountCancelled();
            var verdict = PlaceCore(rule, counters, tenantId, tenant, fingerprint);
            if (!best.Fired || RunawayVerdict.Strength(rule) > RunawayVerdict.Strength(best.Rule!))
                best = new RunawayHit(rule, verdict, cancel, rule.Shadow, observed, limit, unit);
        }
        return best;
    }

    /// <summary>
    /// Places a verdict as if <paramref name="rule"/> had fired for the tenant's fingerprint — the
    /// seam for verdicts decided by the policy tier. Returns the verdict in force, or null when the
    /// watch is zero or the table is full.
    /// </summary>
    public RunawayVerdict? Place(RunawayRuleConfig rule, int tenantId, string tenant, ulong fingerprint) =>
        PlaceCore(rule, new RunawayRuleCounters(rule.Name), tenantId, tenant, fingerprint);

    /// <summary>Removes lapsed verdicts; the janitor calls it.</summary>
    public void Sweep()
    {
        if (Volatile.Read(ref _count) == 0)
            return;
        lock (_writeLock)
            SweepLocked(_time.GetTimestamp());
    }

    /// <summary>Active verdicts (a snapshot, for telemetry and the policy tier).</summary>
    public List<RunawayVerdict> GetVerdicts()
    {
        var now = _time.GetTimestamp();
        var list = new List<RunawayVerdict>();
        foreach (var (_, verdict) in _verdicts)
            if (verdict.IsActive(now))
                list.Add(verdict);
        return list;
    }

    private RunawayVerdict? PlaceCore(RunawayRuleConfig rule, RunawayRuleCounters counters, int tenantId, string tenant, ulong fingerprint)
    {
        if (rule.Watch <= TimeSpan.Zero)
            return null;
        var key = rule.Scope == RunawayScope.Tenant ? new VerdictKey(tenantId, 0, true) : new VerdictKey(tenantId, fingerprint, false);
        var now = _time.GetTimestamp();
        var expiresAt = now + (long)(rule.Watch.Ticks * ((double)_time.TimestampFrequency / TimeSpan.TicksPerSecond));
        lock (_writeLock)
        {
            var exists = _verdicts.TryGetValue(key, out var existing);
            if (exists && existing!.IsActive(now))
            {
                if (ReferenceEquals(existing.Rule, rule) || existing.Rule == rule)
                {
                    existing.Extend(expiresAt);
                    return existing;
                }
                if (RunawayVerdict.Strength(rule) <= RunawayVerdict.Strength(existing.Rule))
                    return existing;
            }
            if (!exists && _count >= _rules.Config.MaxVerdicts)
            {
                SweepLocked(now);
                if (_count >= _rules.Config.MaxVerdicts)
                {
                    Interlocked.Increment(ref _dropped);
                    return null;
                }
            }
            var rate = rule.Action == RunawayAction.Throttle && rule.ThrottleRuPerSecond > 0
                ? new RuBucket(new RuBucketSettings(rule.ThrottleRuPerSecond, rule.ThrottleRuPerSecond, rule.ThrottleRuPerSecond), _time)
                : null;
            var verdict = new RunawayVerdict(rule, counters, key, tenant, expiresAt, rate);
            _verdicts[key] = verdict;
            if (!exists)
                Volatile.Write(ref _count, _count + 1);
            return verdict;
        }
    }

    private void SweepLocked(long now)
    {
        foreach (var (key, verdict) in _verdicts)
            if (!verdict.IsActive(now) && _verdicts.TryRemove(key, out _))
                Volatile.Write(ref _count, _count - 1);
    }

    /// <summary>One configuration's rules with their counters, swapped whole on reload.</summary>
    private sealed class RuleSet
    {
        public RuleSet(RunawayConfig config)
        {
            Config = config;
            Array = [.. config.Rules];
            Counters = new RunawayRuleCounters[Array.Length];
            for (var i = 0; i < Array.Length; i++)
                Counters[i] = new RunawayRuleCounters(Array[i].Name);
        }

        public RunawayConfig Config { get; }

        public RunawayRuleConfig[] Array { get; }

        public RunawayRuleCounters[] Counters { get; }
    }
}
