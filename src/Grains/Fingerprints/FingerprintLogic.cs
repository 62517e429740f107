using MProxy.Abstractions.Policy;

namespace MProxy.Grains.Fingerprints;

/// <summary>
/// Merges per-edge cost reports of one query shape and decides its runaway verdict globally. Pure.
/// </summary>
/// <remarks>
/// Statistics decay with <see cref="RunawayPolicy.HalfLife"/>, so a shape that got cheap stops being
/// a runaway. Once enough executions are seen (<see cref="RunawayPolicy.MinExecutions"/>), the mean
/// RU per execution and mean latency are held against the reject, throttle and deprioritize
/// thresholds, strictest first. A verdict lasts <see cref="RunawayPolicy.VerdictTtl"/> and is renewed
/// by each report that still crosses a threshold; one that is not renewed simply expires.
/// </remarks>
public static class FingerprintLogic
{
    public const int MaxSampleLength = 200;

    public static (FingerprintState State, RunawayVerdict? Published) Report(
        FingerprintState state, RunawayPolicy policy, TenantId tenant, FingerprintId fingerprint, EdgeId edge, FingerprintCostReport report, DateTimeOffset now)
    {
        var decay = Decay(state, policy, now);
        var count = Math.Max(0, report.Count);
        var next = state with
        {
            Sample = report.Sample is { Length: > 0 } sample ? Truncate(sample) : state.Sample,
            LastUpdate = now,
            Executions = (state.Executions * decay) + count,
            Ru = (state.Ru * decay) + Finite(report.TotalRu),
            LatencyMs = (state.LatencyMs * decay) + Finite(report.TotalLatencyMs),
            MaxRu = Math.Max(state.MaxRu * decay, Finite(report.MaxRu)),
            MaxLatencyMs = Math.Max(state.MaxLatencyMs * decay, Finite(report.MaxLatencyMs)),
            TotalExecutions = state.TotalExecutions + count,
            Edges = Mark(state.Edges, edge, now, policy.VerdictTtl),
            Verdict = state.Verdict is { } old && old.ExpiresAt > now ? old : null,
        };

        var (action, reason) = Decide(next, policy);
        if (action == RunawayAction.None)
            return (next, null);
        var verdict = new RunawayVerdict
        {
            Tenant = tenant,
            Fingerprint = fingerprint,
            Action = action,
            Reason = reason,
            ExpiresAt = now + policy.VerdictTtl,
            ThrottleRuPerSecond = action == RunawayAction.Throttle ? policy.ThrottleRuPerSecond : 0,
        };
        return (next with { Verdict = verdict }, verdict);
    }

    public static (RunawayAction Action, string Reason) Decide(FingerprintState state, RunawayPolicy policy)
    {
        if (state.Executions < policy.MinExecutions || state.Executions <= 0)
            return (RunawayAction.None, "");
        var meanRu = state.Ru / state.Executions;
        var meanLatency = state.LatencyMs / state.Executions;
        if (policy.Reject is { } reject && reject.IsCrossedBy(meanRu, meanLatency))
            return (RunawayAction.Reject, Reason("reject", reject, meanRu, meanLatency));
        if (policy.Throttle is { } throttle && throttle.IsCrossedBy(meanRu, meanLatency))
            return (RunawayAction.Throttle, Reason("throttle", throttle, meanRu, meanLatency));
        if (policy.Deprioritize is { } deprioritize && deprioritize.IsCrossedBy(meanRu, meanLatency))
            return (RunawayAction.Deprioritize, Reason("deprioritize", deprioritize, meanRu, meanLatency));
        return (RunawayAction.None, "");
    }

    public static FingerprintView View(FingerprintState state, RunawayPolicy policy, TenantId tenant, FingerprintId fingerprint, DateTimeOffset now)
    {
        var decay = Decay(state, policy, now);
        var executions = state.Executions * decay;
        return new FingerprintView
        {
            Tenant = tenant,
            Fingerprint = fingerprint,
            Sample = state.Sample,
            Executions = executions,
            MeanRu = state.Executions > 0 ? state.Ru / state.Executions : 0,
            MeanLatencyMs = state.Executions > 0 ? state.LatencyMs / state.Executions : 0,
            MaxRu = state.MaxRu * decay,
            MaxLatencyMs = state.MaxLatencyMs * decay,
            TotalExecutions = state.TotalExecutions,
            Edges = state.Edges.Count(e => now - e.LastSeen < policy.VerdictTtl),
            Verdict = state.Verdict is { } v && v.ExpiresAt > now ? v : null,
        };
    }

    private static double Decay(FingerprintState state, RunawayPolicy policy, DateTimeOffset now)
    {
        if (state.LastUpdate == default || now <= state.LastUpdate || policy.HalfLife <= TimeSpan.Zero)
            return 1;
        return Math.Pow(0.5, (now - state.LastUpdate) / policy.HalfLife);
    }

    private static List<EdgeMark> Mark(IReadOnlyList<EdgeMark> edges, EdgeId edge, DateTimeOffset now, TimeSpan keep)
    {
        var marks = new List<EdgeMark>(edges.Count + 1);
        foreach (var mark in edges)
            if (mark.Edge != edge && now - mark.LastSeen < keep)
                marks.Add(mark);
        marks.Add(new EdgeMark(edge, now));
        marks.Sort((a, b) => a.Edge.CompareTo(b.Edge));
        return marks;
    }

    private static string Reason(string action, RunawayThreshold threshold, double meanRu, double meanLatency) =>
        threshold.RuPerExecution is { } ru && meanRu >= ru
            ? FormattableString.Invariant($"{action}: mean {meanRu:0.#} RU per execution ≥ {ru:0.#}")
            : FormattableString.Invariant($"{action}: mean latency {meanLatency:0.#} ms ≥ {threshold.LatencyMs:0.#} ms");

    private static double Finite(double value) => double.IsFinite(value) ? Math.Max(0, value) : 0;

    private static string Truncate(string sample) => sample.Length <= MaxSampleLength ? sample : sample[..MaxSampleLength];
}
