using MProxy.Abstractions.Policy;

namespace MProxy.Edge.Policy;

/// <summary>Where a tenant's allowance comes from.</summary>
public enum AllowanceSource
{
    /// <summary>A lease from the policy tier, valid now.</summary>
    Lease,

    /// <summary>The tier could not be reached before the lease expired: budget ÷ live edges (at least the floor).</summary>
    LocalShare,

    /// <summary>The tenant has no global budget: only the edge's local rules limit it.</summary>
    Unlimited,
}

/// <summary>
/// What this edge may spend for one tenant right now: refill a local token bucket at
/// <see cref="RuPerSecond"/> up to <see cref="BurstRu"/>. <see cref="Version"/> changes whenever
/// the allowance does, so a bucket reconfigures only then.
/// </summary>
public readonly record struct TenantAllowance(double RuPerSecond, double BurstRu, AllowanceSource Source, long Version, DateTimeOffset ValidUntil);

/// <summary>
/// The seam the QoS token buckets consume: a lock-free read of the tenant's current allowance,
/// never a network call. <c>false</c> means the policy tier has not spoken about this tenant yet
/// (first queries of a new tenant): use the locally configured budget; the tenant is reported at
/// the next exchange as soon as usage is recorded for it.
/// </summary>
public interface ITenantAllowance
{
    bool TryGetAllowance(string tenant, out TenantAllowance allowance);
}

/// <summary>Backend connection slots this edge may hold (the pools consume it). <c>false</c>: no limit known, use the pool size.</summary>
public interface ICapacityAllowance
{
    bool TryGetSlots(string backend, out int slots);
}

/// <summary>Global runaway verdicts in force (the admission step consumes it).</summary>
public interface IRunawayVerdicts
{
    bool TryGetVerdict(string tenant, ulong fingerprint, out RunawayVerdict verdict);
}

/// <summary>
/// What the QoS and pooling code tell the policy tier, batched into the next exchange. Every method
/// is cheap and thread-safe (a dictionary lookup and a short lock), safe on the query path.
/// </summary>
public interface IPolicyUsageSink
{
    /// <summary>A query (or an increment of a running one) was charged <paramref name="ru"/>.</summary>
    void RecordAdmitted(string tenant, double ru);

    /// <summary>A query was refused: throttled (budget) or shed (overload); <paramref name="estimatedRu"/> counts toward demand.</summary>
    void RecordRefused(string tenant, double estimatedRu, bool shed);

    /// <summary>A query waits for the tenant's bucket to leave debt: the budget is holding the tenant back on this edge.</summary>
    void RecordBudgetWait(string tenant);

    /// <summary>The tenant's bucket is <paramref name="debtRu"/> in debt now (a gauge; 0 when not).</summary>
    void ReportDebt(string tenant, double debtRu);

    /// <summary>One execution of a query shape finished (or was cancelled) costing <paramref name="ru"/> over <paramref name="latencyMs"/>.</summary>
    void RecordExecution(string tenant, ulong fingerprint, double ru, double latencyMs, string? sample = null);

    /// <summary>The pool to <paramref name="backend"/> wants <paramref name="wanted"/> connections (open + waiting) and has <paramref name="open"/>.</summary>
    void ReportBackend(string backend, int wanted, int open);
}
