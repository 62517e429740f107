namespace MProxy.Abstractions.Policy;

// The edge↔policy-tier exchange: one call per edge per tick carrying everything the edge has to say
// (usage, demand, debt, fingerprint costs, backend slot needs) for all its tenants, answered with
// everything it needs until the next tick (leases, verdicts, backend slots, membership, config
// version). Never called on the query path.

/// <summary>One edge's report for one tick.</summary>
public sealed record PolicyExchangeRequest
{
    public required EdgeId Edge { get; init; }

    /// <summary>Increases by one per exchange the edge attempts; lets the tier spot restarts and replays.</summary>
    public long Sequence { get; init; }

    /// <summary>The policy configuration version the edge last received (0: none yet).</summary>
    public long ConfigVersion { get; init; }

    /// <summary>True while the edge serves some tenant on a local-only share (it could not reach the tier in time).</summary>
    public bool Degraded { get; init; }

    public IReadOnlyList<TenantUsageReport> Tenants { get; init; } = [];

    public IReadOnlyList<FingerprintCostReport> Fingerprints { get; init; } = [];

    public IReadOnlyList<BackendSlotDemand> Backends { get; init; } = [];
}

/// <summary>What one edge did for one tenant since its previous report.</summary>
public sealed record TenantUsageReport
{
    public required TenantId Tenant { get; init; }

    /// <summary>RU charged since the previous report.</summary>
    public double UsedRu { get; init; }

    /// <summary>Moving average of the RU/s the edge was asked for (admitted plus refused): what it would spend unthrottled.</summary>
    public double DemandRuPerSecond { get; init; }

    /// <summary>The edge's current debt for the tenant (RU spent beyond its tokens), a gauge, ≥ 0.</summary>
    public double DebtRu { get; init; }

    /// <summary>
    /// The tenant's budget held queries back on this edge since its previous report (one waited for
    /// budget or was refused for it, or the bucket is in debt): its demand then only measures what it
    /// was allowed, so the tier sizes it at least a fair share.
    /// </summary>
    public bool Constrained { get; init; }

    public long Admitted { get; init; }

    public long Throttled { get; init; }

    public long Shed { get; init; }

    /// <summary>The sequence of the newest lease the edge has applied (0: none), so the tier can release older ones.</summary>
    public long AppliedLeaseSequence { get; init; }
}

/// <summary>The cost of one query shape on one edge since its previous report.</summary>
public sealed record FingerprintCostReport
{
    public required TenantId Tenant { get; init; }

    public required FingerprintId Fingerprint { get; init; }

    public long Count { get; init; }

    public double TotalRu { get; init; }

    public double TotalLatencyMs { get; init; }

    public double MaxRu { get; init; }

    public double MaxLatencyMs { get; init; }

    /// <summary>Normalized text (literals removed), truncated; shown on the dashboard. Optional.</summary>
    public string? Sample { get; init; }
}

/// <summary>How many server connection slots one edge wants for one backend.</summary>
public sealed record BackendSlotDemand
{
    public required BackendId Backend { get; init; }

    /// <summary>Slots the edge would use now: open connections plus waiting requests, capped by its pool size.</summary>
    public int Wanted { get; init; }

    /// <summary>Connections the edge has open to the backend right now.</summary>
    public int Open { get; init; }

    /// <summary>The newest slot lease the edge complies with (its open connections are within it); 0: none.</summary>
    public long AppliedLeaseSequence { get; init; }
}

/// <summary>The tier's answer to one <see cref="PolicyExchangeRequest"/>.</summary>
public sealed record PolicyExchangeResponse
{
    /// <summary>The policy configuration version the answer was computed with.</summary>
    public long ConfigVersion { get; init; }

    public DateTimeOffset ServerTime { get; init; }

    /// <summary>Edges that reported recently (all tenants): the divisor for local-only shares when the tier is unreachable.</summary>
    public int LiveEdges { get; init; }

    /// <summary>How long until the edge should call again.</summary>
    public TimeSpan NextExchangeIn { get; init; } = TimeSpan.FromSeconds(1);

    public IReadOnlyList<TenantLease> Leases { get; init; } = [];

    public IReadOnlyList<RunawayVerdict> Verdicts { get; init; } = [];

    public IReadOnlyList<BackendSlotLease> Backends { get; init; } = [];
}

/// <summary>
/// What one edge may spend for one tenant: refill at <see cref="RuPerSecond"/> into a bucket of at most
/// <see cref="BurstRu"/>, from now until <see cref="ValidUntil"/>. A newer lease (higher
/// <see cref="Sequence"/>) replaces an older one; an expired lease is worth nothing.
/// </summary>
public sealed record TenantLease
{
    public required TenantId Tenant { get; init; }

    public long Sequence { get; init; }

    public double RuPerSecond { get; init; }

    public double BurstRu { get; init; }

    public DateTimeOffset ValidUntil { get; init; }

    /// <summary>The tenant has no budget configured: spend without a global limit (the edge's local rules still apply).</summary>
    public bool Unlimited { get; init; }

    /// <summary>The tenant's whole budget, for the local-only share when leases cannot be renewed.</summary>
    public double BudgetRuPerSecond { get; init; }

    public double BudgetBurstRu { get; init; }

    /// <summary>Edges currently sharing this tenant's budget.</summary>
    public int LiveEdges { get; init; }

    /// <summary>RU the tier still counts against the tenant as debt across all edges.</summary>
    public double TenantDebtRu { get; init; }
}

/// <summary>Backend connection slots one edge may hold until <see cref="ValidUntil"/>.</summary>
public sealed record BackendSlotLease
{
    public required BackendId Backend { get; init; }

    public long Sequence { get; init; }

    public int Slots { get; init; }

    public DateTimeOffset ValidUntil { get; init; }

    /// <summary>The backend has no connection limit configured: the edge's own pool size applies.</summary>
    public bool Unlimited { get; init; }

    public int LimitSlots { get; init; }

    public int LiveEdges { get; init; }
}

/// <summary>What to do with a query shape found to be a runaway.</summary>
public enum RunawayAction
{
    None = 0,
    Deprioritize = 1,
    Throttle = 2,
    Reject = 3,
}

/// <summary>A global decision about one query shape, in force until <see cref="ExpiresAt"/>.</summary>
public sealed record RunawayVerdict
{
    public required TenantId Tenant { get; init; }

    public required FingerprintId Fingerprint { get; init; }

    public RunawayAction Action { get; init; }

    /// <summary>Which threshold was crossed, for logs and the client's error message.</summary>
    public string Reason { get; init; } = "";

    public DateTimeOffset ExpiresAt { get; init; }

    /// <summary>For <see cref="RunawayAction.Throttle"/>: the RU/s the shape may use per edge.</summary>
    public double ThrottleRuPerSecond { get; init; }
}
