using MProxy.Abstractions.Policy;
using MProxy.Grains.Budgets;
using MProxy.Grains.Capacity;
using MProxy.Grains.Edges;
using MProxy.Grains.Fingerprints;
using MProxy.Grains.Hosting;

namespace MProxy.Grains.Exchange;

/// <summary>Reads every grain's last committed state into the dashboard's <see cref="PolicySnapshot"/>. Locks nothing.</summary>
public sealed class PolicyDirectory(PolicyGrainFactory grains)
{
    /// <summary>Edges gone longer than this are left off the dashboard.</summary>
    public static readonly TimeSpan ForgetEdgesAfter = TimeSpan.FromHours(1);

    public const int MaxFingerprints = 500;

    public async Task<PolicySnapshot> SnapshotAsync(CancellationToken cancellationToken)
    {
        var host = grains.Host;
        var config = grains.Config.Current;
        var now = host.Time.GetUtcNow();
        var json = GrainStateJsonContext.Default;

        var edges = new List<EdgeView>();
        foreach (var (key, state) in await host.ListAsync(PolicyGrainFactory.EdgeType, json.EdgeState, cancellationToken).ConfigureAwait(false))
            if (now - state.LastSeen < ForgetEdgesAfter)
                edges.Add(EdgeLogic.View(state, config, new EdgeId(key), now));

        var tenants = new List<TenantBudgetView>();
        foreach (var (key, state) in await host.ListAsync(PolicyGrainFactory.TenantBudgetType, json.TenantBudgetState, cancellationToken).ConfigureAwait(false))
            tenants.Add(TenantBudgetLogic.View(state, config, new TenantId(key), now));

        var fingerprints = new List<FingerprintView>();
        foreach (var (key, state) in await host.ListAsync(PolicyGrainFactory.FingerprintType, json.FingerprintState, cancellationToken).ConfigureAwait(false))
            if (PolicyGrainFactory.TryParseFingerprintKey(key, out var tenant, out var fingerprint))
                fingerprints.Add(FingerprintLogic.View(state, config.Runaway, tenant, fingerprint, now));
        fingerprints.Sort((a, b) =>
        {
            var byVerdict = (b.Verdict?.Action ?? RunawayAction.None).CompareTo(a.Verdict?.Action ?? RunawayAction.None);
            return byVerdict != 0 ? byVerdict : b.MeanRu.CompareTo(a.MeanRu);
        });
        if (fingerprints.Count > MaxFingerprints)
            fingerprints.RemoveRange(MaxFingerprints, fingerprints.Count - MaxFingerprints);

        var backends = new List<CapacityView>();
        foreach (var (key, state) in await host.ListAsync(PolicyGrainFactory.CapacityLeaseType, json.CapacityState, cancellationToken).ConfigureAwait(false))
            backends.Add(CapacityLogic.View(state, config, new BackendId(key), now));

        return new PolicySnapshot
        {
            Now = now,
            ConfigVersion = config.Version,
            Edges = edges,
            Tenants = tenants,
            Fingerprints = fingerprints,
            Backends = backends,
        };
    }
}
