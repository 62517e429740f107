using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using MProxy.Abstractions.Policy;
using MProxy.Grains.Hosting;

namespace MProxy.Grains.Exchange;

/// <summary>
/// Serves one edge's batched exchange: fingerprint reports first (so new verdicts reach the tenant
/// budgets in the same exchange), then each tenant's budget (lease plus the tenant's verdicts), each
/// backend's slots, and the edge's membership record. The same code answers the silo's HTTP endpoint
/// and, in the embedded mode, the edge's policy client directly.
/// </summary>
public sealed partial class PolicyExchangeService : IPolicyTier
{
    /// <summary>Upper bounds on one request, so one confused edge cannot stall a silo.</summary>
    public const int MaxTenants = 10_000;
    public const int MaxFingerprints = 10_000;
    public const int MaxBackends = 1_000;

    private readonly PolicyGrainFactory _grains;
    private readonly EdgeMembership _membership;
    private readonly ILogger _log;
    private readonly int _parallelism;

    public PolicyExchangeService(PolicyGrainFactory grains, ILogger<PolicyExchangeService>? log = null, int parallelism = 8)
    {
        _grains = grains;
        _membership = new EdgeMembership(grains);
        _log = (ILogger?)log ?? NullLogger.Instance;
        _parallelism = Math.Max(1, parallelism);
    }

    public EdgeMembership Membership => _membership;

    public async Task<PolicyExchangeResponse> ExchangeAsync(PolicyExchangeRequest request, CancellationToken cancellationToken)
    {
        Validate(request);
        var config = _grains.Config.Current;
        var edge = request.Edge;

        var published = new RunawayVerdict?[request.Fingerprints.Count];
        await ForEachAsync(request.Fingerprints.Count, async (i, ct) =>
        {
            var report = request.Fingerprints[i];
            published[i] = await _grains.Fingerprint(report.Tenant, report.Fingerprint).ReportAsync(edge, report, ct).ConfigureAwait(false);
        }, cancellationToken).ConfigureAwait(false);

        var newVerdicts = new Dictionary<TenantId, List<RunawayVerdict>>();
        foreach (var verdict in published)
            if (verdict is not null)
            {
                if (!newVerdicts.TryGetValue(verdict.Tenant, out var list))
                    newVerdicts[verdict.Tenant] = list = [];
                list.Add(verdict);
            }

        // Tenants with a new verdict but no usage line still get their verdicts delivered.
        var tenants = new List<TenantUsageReport>(request.Tenants);
        foreach (var tenant in newVerdicts.Keys)
            if (!tenants.Exists(t => t.Tenant == tenant))
                tenants.Add(new TenantUsageReport { Tenant = tenant });

        var replies = new TenantExchangeReply[tenants.Count];
        await ForEachAsync(tenants.Count, async (i, ct) =>
        {
            var report = tenants[i];
            IReadOnlyList<RunawayVerdict> verdicts = newVerdicts.TryGetValue(report.Tenant, out var list) ? list : [];
            replies[i] = await _grains.TenantBudget(report.Tenant).ExchangeAsync(new TenantExchange(edge, report, verdicts), ct).ConfigureAwait(false);
        }, cancellationToken).ConfigureAwait(false);

        var slots = new BackendSlotLease[request.Backends.Count];
        await ForEachAsync(request.Backends.Count, async (i, ct) =>
        {
            var demand = request.Backends[i];
            slots[i] = await _grains.CapacityLease(demand.Backend).ExchangeAsync(edge, demand, ct).ConfigureAwait(false);
        }, cancellationToken).ConfigureAwait(false);

        await _grains.Edge(edge).HeartbeatAsync(
            new EdgeHeartbeat(request.Sequence, request.ConfigVersion, request.Degraded, request.Tenants.Count, request.Fingerprints.Count, request.Backends.Count),
            cancellationToken).ConfigureAwait(false);
        var liveEdges = await _membership.LiveEdgesAsync(edge, cancellationToken).ConfigureAwait(false);

        var leases = new TenantLease[replies.Length];
        var verdictsOut = new List<RunawayVerdict>();
        for (var i = 0; i < replies.Length; i++)
        {
            leases[i] = replies[i].Lease;
            verdictsOut.AddRange(replies[i].Verdicts);
        }
        if (request.Degraded)
            EdgeDegraded(_log, edge.Value);
        return new PolicyExchangeResponse
        {
            ConfigVersion = config.Version,
            ServerTime = _grains.Host.Time.GetUtcNow(),
            LiveEdges = liveEdges,
            NextExchangeIn = config.ExchangeInterval,
            Leases = leases,
            Verdicts = verdictsOut,
            Backends = slots,
        };
    }

    private static void Validate(PolicyExchangeRequest request)
    {
        if (string.IsNullOrEmpty(request.Edge.Value))
            throw new PolicyRequestException("edge is required");
        if (request.Tenants.Count > MaxTenants || request.Fingerprints.Count > MaxFingerprints || request.Backends.Count > MaxBackends)
            throw new PolicyRequestException($"too many entries (at most {MaxTenants} tenants, {MaxFingerprints} fingerprints, {MaxBackends} backends)");
        foreach (var t in request.Tenants)
            if (string.IsNullOrEmpty(t.Tenant.Value))
                throw new PolicyRequestException("a tenant report has no tenant");
        foreach (var f in request.Fingerprints)
            if (string.IsNullOrEmpty(f.Tenant.Value))
                throw new PolicyRequestException("a fingerprint report has no tenant");
        foreach (var b in request.Backends)
            if (string.IsNullOrEmpty(b.Backend.Value))
                throw new PolicyRequestException("a backend demand has no backend");
    }

    private Task ForEachAsync(int count, Func<int, CancellationToken, ValueTask> body, CancellationToken cancellationToken)
    {
        if (count == 0)
            return Task.CompletedTask;
        if (_parallelism == 1)
            return ForEachInOrderAsync(count, body, cancellationToken);
        return Parallel.ForEachAsync(Enumerable.Range(0, count),
            new ParallelOptions { MaxDegreeOfParallelism = _parallelism, CancellationToken = cancellationToken }, body);
    }

    /// <summary>Parallelism 1: the calls one after another on the caller's thread, no thread-pool hop (what a deterministic simulation needs).</summary>
    private static async Task ForEachInOrderAsync(int count, Func<int, CancellationToken, ValueTask> body, CancellationToken cancellationToken)
    {
        for (var i = 0; i < count; i++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            await body(i, cancellationToken).ConfigureAwait(false);
        }
    }

    [LoggerMessage(EventId = 610, Level = LogLevel.Information, Message = "Edge {Edge} reports it is degraded (serving some tenant on a local share)")]
    private static partial void EdgeDegraded(ILogger logger, string edge);
}

/// <summary>A request the tier refuses as malformed (HTTP 400 at the silo).</summary>
public sealed class PolicyRequestException(string message) : Exception(message);
