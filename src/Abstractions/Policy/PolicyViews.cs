namespace MProxy.Abstractions.Policy;

// Read models for the dashboard and the admin API.

public sealed record EdgeView
{
    public required EdgeId Edge { get; init; }

    public DateTimeOffset FirstSeen { get; init; }

    public DateTimeOffset LastSeen { get; init; }

    public bool Live { get; init; }

    public bool Degraded { get; init; }

    public long Sequence { get; init; }

    public long Exchanges { get; init; }

    public long ConfigVersion { get; init; }

    public int Tenants { get; init; }
}

public sealed record TenantBudgetView
{
    public required TenantId Tenant { get; init; }

    public bool Unlimited { get; init; }

    public double BudgetRuPerSecond { get; init; }

    public double BurstRu { get; init; }

    /// <summary>Smoothed RU/s spent across all edges.</summary>
    public double SpendRuPerSecond { get; init; }

    public double DemandRuPerSecond { get; init; }

    public double TotalUsedRu { get; init; }

    /// <summary>Sum over edges of the rates the tier is committed to (never above the budget).</summary>
    public double CommittedRuPerSecond { get; init; }

    public double DebtRu { get; init; }

    public long Admitted { get; init; }

    public long Throttled { get; init; }

    public long Shed { get; init; }

    public int LiveEdges { get; init; }

    public IReadOnlyList<EdgeLeaseView> Leases { get; init; } = [];

    public IReadOnlyList<RunawayVerdict> Verdicts { get; init; } = [];
}

public sealed record EdgeLeaseView(EdgeId Edge, long Sequence, double RuPerSecond, double BurstRu, DateTimeOffset ValidUntil, double DemandRuPerSecond, double DebtRu, bool Live);

public sealed record FingerprintView
{
    public required TenantId Tenant { get; init; }

    public required FingerprintId Fingerprint { get; init; }

    public string? Sample { get; init; }

    public double Executions { get; init; }

    public double MeanRu { get; init; }

    public double MeanLatencyMs { get; init; }

    public double MaxRu { get; init; }

    public double MaxLatencyMs { get; init; }

    public long TotalExecutions { get; init; }

    public int Edges { get; init; }

    public RunawayVerdict? Verdict { get; init; }
}

public sealed record CapacityView
{
    public required BackendId Backend { get; init; }

    public bool Unlimited { get; init; }

    public int LimitSlots { get; init; }

    public int CommittedSlots { get; init; }

    public int LiveEdges { get; init; }

    public IReadOnlyList<EdgeSlotView> Leases { get; init; } = [];
}

public sealed record EdgeSlotView(EdgeId Edge, long Sequence, int Slots, int Wanted, int Open, DateTimeOffset ValidUntil, bool Live);

/// <summary>Everything the dashboard shows, in one document.</summary>
public sealed record PolicySnapshot
{
    public DateTimeOffset Now { get; init; }

    public long ConfigVersion { get; init; }

    public IReadOnlyList<EdgeView> Edges { get; init; } = [];

    public IReadOnlyList<TenantBudgetView> Tenants { get; init; } = [];

    public IReadOnlyList<FingerprintView> Fingerprints { get; init; } = [];

    public IReadOnlyList<CapacityView> Backends { get; init; } = [];
}
