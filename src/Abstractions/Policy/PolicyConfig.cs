namespace MProxy.Abstractions.Policy;

/// <summary>
/// One immutable, validated snapshot of the policy the grains enforce: tenants' global RU budgets,
/// backends' connection limits, runaway thresholds, lease timing. A reload builds a new snapshot and
/// swaps one reference; <see cref="Version"/> tells edges and the dashboard which one is in force.
/// </summary>
public sealed record PolicyConfig
{
    public static readonly PolicyConfig Empty = new();

    public long Version { get; init; }

    /// <summary>How long a lease stays valid without renewal: what an edge spends on when the tier is unreachable.</summary>
    public TimeSpan LeasePeriod { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>How often edges exchange with the tier.</summary>
    public TimeSpan ExchangeInterval { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>An edge that has not reported for this long no longer counts as live (its leases still hold until they expire).</summary>
    public TimeSpan EdgeLiveness { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>An edge is granted its demand times this factor (room to grow before the next exchange).</summary>
    public double DemandHeadroom { get; init; } = 1.25;

    /// <summary>The fraction of its fair share an idle edge keeps, so its first queries need not wait for a lease.</summary>
    public double IdleShareFraction { get; init; } = 0.1;

    /// <summary>Applies to tenants not listed; null: such tenants have no global budget (unlimited).</summary>
    public TenantPolicy? DefaultTenant { get; init; }

    public IReadOnlyList<TenantPolicy> Tenants { get; init; } = [];

    public IReadOnlyList<BackendPolicy> Backends { get; init; } = [];

    public RunawayPolicy Runaway { get; init; } = new();

    public TenantPolicy? FindTenant(TenantId tenant)
    {
        foreach (var t in Tenants)
            if (t.Tenant == tenant)
                return t;
        return DefaultTenant is null ? null : DefaultTenant with { Tenant = tenant };
    }

    public BackendPolicy? FindBackend(BackendId backend)
    {
        foreach (var b in Backends)
            if (b.Backend == backend)
                return b;
        return null;
    }
}

/// <summary>A tenant's global budget: refills at <see cref="RuPerSecond"/> into a bucket of <see cref="BurstRu"/>, shared by all edges.</summary>
public sealed record TenantPolicy(TenantId Tenant, double RuPerSecond, double BurstRu);

/// <summary>A backend's connection limit, shared by all edges.</summary>
public sealed record BackendPolicy(BackendId Backend, int MaxConnections);

/// <summary>A runaway threshold: crossed when the mean RU per execution or the mean latency reaches it (null: not checked).</summary>
public sealed record RunawayThreshold(double? RuPerExecution, double? LatencyMs)
{
    public bool IsCrossedBy(double ruPerExecution, double latencyMs) =>
        (RuPerExecution is { } ru && ruPerExecution >= ru) || (LatencyMs is { } ms && latencyMs >= ms);
}

/// <summary>When a query shape becomes a runaway, and what is done about it.</summary>
public sealed record RunawayPolicy
{
    /// <summary>Executions (decayed) a shape needs across all edges before any verdict.</summary>
    public double MinExecutions { get; init; } = 5;

    /// <summary>Half-life of the merged cost statistics: older executions weigh less.</summary>
    public TimeSpan HalfLife { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>How long a verdict holds without being renewed by new reports.</summary>
    public TimeSpan VerdictTtl { get; init; } = TimeSpan.FromSeconds(60);

    public RunawayThreshold? Deprioritize { get; init; }

    public RunawayThreshold? Throttle { get; init; }

    public RunawayThreshold? Reject { get; init; }

    /// <summary>The per-edge RU/s a throttled shape may use.</summary>
    public double ThrottleRuPerSecond { get; init; } = 10;
}
