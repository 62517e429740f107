namespace MProxy.Abstractions.Policy;

// Grain contracts: keyed and asynchronous, so that the host (this project's grain host on a grain
// store, or another virtual-actor runtime) is a hosting choice, not a logic change.

/// <summary>Finds grains by key. Getting a reference is free; the grain is activated on its first call.</summary>
public interface IPolicyGrainFactory
{
    ITenantBudgetGrain TenantBudget(TenantId tenant);

    IFingerprintGrain Fingerprint(TenantId tenant, FingerprintId fingerprint);

    ICapacityLeaseGrain CapacityLease(BackendId backend);

    IEdgeGrain Edge(EdgeId edge);
}

/// <summary>A tenant's global RU token bucket, leased out to edges.</summary>
public interface ITenantBudgetGrain
{
    TenantId Tenant { get; }

    /// <summary>Records one edge's report, publishes new verdicts, and grants that edge its next lease.</summary>
    Task<TenantExchangeReply> ExchangeAsync(TenantExchange exchange, CancellationToken cancellationToken);

    Task<TenantBudgetView?> ViewAsync(CancellationToken cancellationToken);
}

public sealed record TenantExchange(EdgeId Edge, TenantUsageReport Report, IReadOnlyList<RunawayVerdict> NewVerdicts);

/// <summary>The edge's new lease and the tenant's verdicts in force.</summary>
public sealed record TenantExchangeReply(TenantLease Lease, IReadOnlyList<RunawayVerdict> Verdicts);

/// <summary>One query shape's merged cost and its runaway verdict.</summary>
public interface IFingerprintGrain
{
    TenantId Tenant { get; }

    FingerprintId Fingerprint { get; }

    /// <summary>Merges one edge's cost report; returns the verdict when it starts, changes or is renewed, else null.</summary>
    Task<RunawayVerdict?> ReportAsync(EdgeId edge, FingerprintCostReport report, CancellationToken cancellationToken);

    Task<FingerprintView?> ViewAsync(CancellationToken cancellationToken);
}

/// <summary>A backend's connection slots, leased out to edges.</summary>
public interface ICapacityLeaseGrain
{
    BackendId Backend { get; }

    Task<BackendSlotLease> ExchangeAsync(EdgeId edge, BackendSlotDemand demand, CancellationToken cancellationToken);

    Task<CapacityView?> ViewAsync(CancellationToken cancellationToken);
}

/// <summary>One edge's membership record: when it last reported, whether it is degraded.</summary>
public interface IEdgeGrain
{
    EdgeId Edge { get; }

    Task HeartbeatAsync(EdgeHeartbeat heartbeat, CancellationToken cancellationToken);

    Task<EdgeView?> ViewAsync(CancellationToken cancellationToken);
}

public sealed record EdgeHeartbeat(long Sequence, long ConfigVersion, bool Degraded, int Tenants, int Fingerprints, int Backends);
