using MProxy.Abstractions.Policy;

namespace MProxy.Grains.Budgets;

/// <summary>The durable state of one <c>TenantBudget(tenant)</c> grain. Immutable: logic returns a new one.</summary>
public sealed record TenantBudgetState
{
    public static readonly TenantBudgetState Initial = new();

    /// <summary>The sequence of the last lease granted (any edge).</summary>
    public long LastSequence { get; init; }

    public double TotalUsedRu { get; init; }

    public long Admitted { get; init; }

    public long Throttled { get; init; }

    public long Shed { get; init; }

    public IReadOnlyList<EdgeBudgetEntry> Edges { get; init; } = [];

    /// <summary>Runaway verdicts in force for the tenant, handed to every edge that serves it.</summary>
    public IReadOnlyList<RunawayVerdict> Verdicts { get; init; } = [];
}

/// <summary>One edge's share of a tenant's budget.</summary>
public sealed record EdgeBudgetEntry
{
    public required EdgeId Edge { get; init; }

    public DateTimeOffset FirstSeen { get; init; }

    public DateTimeOffset LastSeen { get; init; }

    public double DemandRuPerSecond { get; init; }

    public double SpendRuPerSecond { get; init; }

    public double DebtRu { get; init; }

    /// <summary>The edge's last report said the budget held it back (<see cref="TenantUsageReport.Constrained"/>).</summary>
    public bool Constrained { get; init; }

    /// <summary>
    /// Leases the edge may still be spending: not expired, and not older than the newest one it has
    /// said it applied. The tier is committed to the largest of them until they go.
    /// </summary>
    public IReadOnlyList<GrantedLease> Leases { get; init; } = [];
}

public sealed record GrantedLease(long Sequence, double RuPerSecond, double BurstRu, DateTimeOffset ValidUntil);
