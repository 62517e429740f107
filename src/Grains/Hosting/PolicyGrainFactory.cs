using MProxy.Abstractions.Policy;
using MProxy.Grains.Budgets;
using MProxy.Grains.Capacity;
using MProxy.Grains.Configuration;
using MProxy.Grains.Edges;
using MProxy.Grains.Fingerprints;

namespace MProxy.Grains.Hosting;

/// <summary>
/// The policy grains on a <see cref="GrainHost"/>: each reference turns an interface call into one
/// host call running the grain's pure logic with the policy snapshot in force.
/// </summary>
public sealed class PolicyGrainFactory(GrainHost host, PolicyConfigStore config) : IPolicyGrainFactory
{
    public const string TenantBudgetType = "tenant-budget";
    public const string FingerprintType = "fingerprint";
    public const string CapacityLeaseType = "capacity-lease";
    public const string EdgeType = "edge";

    public GrainHost Host => host;

    public PolicyConfigStore Config => config;

    public ITenantBudgetGrain TenantBudget(TenantId tenant) => new TenantBudgetGrain(host, config, tenant);

    public IFingerprintGrain Fingerprint(TenantId tenant, FingerprintId fingerprint) => new FingerprintGrain(host, config, tenant, fingerprint);

    public ICapacityLeaseGrain CapacityLease(BackendId backend) => new CapacityLeaseGrain(host, config, backend);

    public IEdgeGrain Edge(EdgeId edge) => new EdgeGrain(host, config, edge);

    /// <summary>A fingerprint grain's key: the tenant, a slash, 16 hex digits (the tenant may itself contain slashes).</summary>
    public static string FingerprintKey(TenantId tenant, FingerprintId fingerprint) => $"{tenant.Value}/{fingerprint}";

    public static bool TryParseFingerprintKey(string key, out TenantId tenant, out FingerprintId fingerprint)
    {
        var slash = key.LastIndexOf('/');
        tenant = new TenantId(slash > 0 ? key[..slash] : "");
        fingerprint = default;
        return slash > 0 && FingerprintId.TryParse(key[(slash + 1)..], out fingerprint);
    }

    private sealed class TenantBudgetGrain(GrainHost host, PolicyConfigStore config, TenantId tenant) : ITenantBudgetGrain
    {
        private readonly GrainKey _key = new(TenantBudgetType, tenant.Value);

        public TenantId Tenant => tenant;

        public Task<TenantExchangeReply> ExchangeAsync(TenantExchange exchange, CancellationToken cancellationToken) =>
            host.CallAsync(_key, GrainStateJsonContext.Default.TenantBudgetState,
                (state, now) => TenantBudgetLogic.Exchange(state ?? TenantBudgetState.Initial, config.Current, tenant, exchange, now), cancellationToken);

        public async Task<TenantBudgetView?> ViewAsync(CancellationToken cancellationToken) =>
            await host.ReadAsync(_key, GrainStateJsonContext.Default.TenantBudgetState, cancellationToken).ConfigureAwait(false) is { } state
                ? TenantBudgetLogic.View(state, config.Current, tenant, host.Time.GetUtcNow())
                : null;
    }

    private sealed class FingerprintGrain(GrainHost host, PolicyConfigStore config, TenantId tenant, FingerprintId fingerprint) : IFingerprintGrain
    {
        private readonly GrainKey _key = new(FingerprintType, FingerprintKey(tenant, fingerprint));

        public TenantId Tenant => tenant;

        public FingerprintId Fingerprint => fingerprint;

        public Task<RunawayVerdict?> ReportAsync(EdgeId edge, FingerprintCostReport report, CancellationToken cancellationToken) =>
            host.CallAsync(_key, GrainStateJsonContext.Default.FingerprintState,
                (state, now) => FingerprintLogic.Report(state ?? FingerprintState.Initial, config.Current.Runaway, tenant, fingerprint, edge, report, now), cancellationToken);

        public async Task<FingerprintView?> ViewAsync(CancellationToken cancellationToken) =>
            await host.ReadAsync(_key, GrainStateJsonContext.Default.FingerprintState, cancellationToken).ConfigureAwait(false) is { } state
                ? FingerprintLogic.View(state, config.Current.Runaway, tenant, fingerprint, host.Time.GetUtcNow())
                : null;
    }

    private sealed class CapacityLeaseGrain(GrainHost host, PolicyConfigStore config, BackendId backend) : ICapacityLeaseGrain
    {
        private readonly GrainKey _key = new(CapacityLeaseType, backend.Value);

        public BackendId Backend => backend;

        public Task<BackendSlotLease> ExchangeAsync(EdgeId edge, BackendSlotDemand demand, CancellationToken cancellationToken) =>
            host.CallAsync(_key, GrainStateJsonContext.Default.CapacityState,
                (state, now) => CapacityLogic.Exchange(state ?? CapacityState.Initial, config.Current, backend, edge, demand, now), cancellationToken);

        public async Task<CapacityView?> ViewAsync(CancellationToken cancellationToken) =>
            await host.ReadAsync(_key, GrainStateJsonContext.Default.CapacityState, cancellationToken).ConfigureAwait(false) is { } state
                ? CapacityLogic.View(state, config.Current, backend, host.Time.GetUtcNow())
                : null;
    }

    private sealed class EdgeGrain(GrainHost host, PolicyConfigStore config, EdgeId edge) : IEdgeGrain
    {
        private readonly GrainKey _key = new(EdgeType, edge.Value);

        public EdgeId Edge => edge;

        public Task HeartbeatAsync(EdgeHeartbeat heartbeat, CancellationToken cancellationToken) =>
            host.CallAsync(_key, GrainStateJsonContext.Default.EdgeState,
                (state, now) => (EdgeLogic.Heartbeat(state ?? EdgeState.Initial, heartbeat, now), true), cancellationToken);

        public async Task<EdgeView?> ViewAsync(CancellationToken cancellationToken) =>
            await host.ReadAsync(_key, GrainStateJsonContext.Default.EdgeState, cancellationToken).ConfigureAwait(false) is { } state
                ? EdgeLogic.View(state, config.Current, edge, host.Time.GetUtcNow())
                : null;
    }
}
