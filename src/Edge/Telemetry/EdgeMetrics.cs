using System.Diagnostics.Metrics;
using MProxy.Edge.Backends;
using MProxy.Edge.Configuration;
using MProxy.Edge.Policy;
using MProxy.Edge.Qos;
using MProxy.Edge.Sessions;

namespace MProxy.Edge.Telemetry;

/// <summary>
/// The observable instruments of the edge: each reads, when collected (a Prometheus scrape or an
/// OTLP export), the statistics the components already keep — client registry, pools and their
/// schedulers, tenant accounts, fingerprint statistics, backend topologies, the policy client —
/// plus the query counters of <see cref="EdgeTelemetry"/>. Nothing here runs on the query path.
/// </summary>
internal sealed class EdgeMetrics
{
    private readonly EdgeTelemetry _telemetry;
    private readonly IEdgeInventory _inventory;
    private readonly QosGate? _qos;
    private readonly PolicyClient? _policy;

    public EdgeMetrics(EdgeTelemetry telemetry, ClientRegistry clients, ConfigStore config, IEdgeInventory inventory, QosGate? qos = null, PolicyClient? policy = null,
        Networking.Epoll.EpollTransport? epoll = null)
    {
        _telemetry = telemetry;
        _inventory = inventory;
        _qos = qos;
        _policy = policy;
        var m = telemetry.Meter;
        var version = m.Version ?? "0";

        m.CreateObservableGauge("mproxy.build_info", () => new Measurement<int>(1, new KeyValuePair<string, object?>("version", version)),
            description: "Always 1; the version label says which mproxy this is.");
        m.CreateObservableGauge("mproxy.clients.connected", () => clients.Count, "{client}", "Client connections registered (logged in, or logging in).");
        m.CreateObservableGauge("mproxy.clients.max", () => config.Current.Clients.MaxConnections, "{client}", "clients.maxConnections: client connections accepted at once.");

        if (epoll is not null)
        {
            m.CreateObservableGauge("mproxy.epoll.loops", () => epoll.Loops, "{loop}", "network.epollLoops: event loops of the epoll transport.");
            m.CreateObservableGauge("mproxy.epoll.loops_serving", () => epoll.LoopsServing, "{loop}", "Event loops whose own threads serve their sockets (the others are parked: the first loop serves theirs).");
            m.CreateObservableCounter("mproxy.epoll.parks", () => epoll.Parking.Parks, "{park}", "Times a loop parked (network.epollParking).");
            m.CreateObservableCounter("mproxy.epoll.unparks", () => epoll.Parking.Unparks, "{park}", "Times a parked loop came back.");
            m.CreateObservableGauge("mproxy.epoll.sleeps_per_event", () => LoopSleeps(epoll), "{sleep}",
                "Per serving loop, its thread's voluntary context switches per epoll event over its last window (what parking decides on; absent for a parked loop or before a window with events).");
        }

        m.CreateObservableCounter("mproxy.queries", Queries, "{query}",
            "Request units sent to servers, by database, tenant, type (read, write; unknown when neither QoS nor routing classifies) and destination (primary, replica).");
        m.CreateObservableCounter("mproxy.deferred_begins", DeferredBegins, "{transaction}",
            "BEGINs the edge answered itself (pool.deferBegin), by database and tenant: each reaches a server only ahead of its transaction's first statement (an empty transaction never does); not request units, so not in mproxy_queries_total.");
        m.CreateObservableCounter("mproxy.relayed", Relayed, "By", "Bytes relayed, by database, tenant and direction (to_client, to_server).");

        m.CreateObservableGauge("mproxy.pool.connections", PoolConnections, "{connection}", "Server connections per pool and state (active: serving a client; idle; opening).");
        m.CreateObservableGauge("mproxy.pool.size", () => Pools(p => p.Stats.Size), "{connection}", "Pool size: the most server connections the pool opens.");
        m.CreateObservableGauge("mproxy.pool.waiting", () => Pools(p => p.Stats.Waiting), "{client}", "Clients waiting in the pool's FIFO queue for a connection.");
        m.CreateObservableGauge("mproxy.pool.longest_wait", () => PoolsDouble(p => p.Stats.LongestWait.TotalSeconds), "s", "How long the longest current waiter of the pool has waited.");

        m.CreateObservableGauge("mproxy.scheduler.busy", () => Schedulers(s => s.Busy), "{slot}", "QoS scheduler slots held (one per server connection in use).");
        m.CreateObservableGauge("mproxy.scheduler.capacity", () => Schedulers(s => s.Capacity), "{slot}", "QoS scheduler slots (the pool's size).");
        m.CreateObservableGauge("mproxy.scheduler.waiting", SchedulerWaiting, "{query}", "Request units queued in the QoS scheduler, by pool and priority.");
        m.CreateObservableCounter("mproxy.scheduler.outcomes", SchedulerOutcomes, "{query}", "How scheduler waits ended, by pool and outcome (granted, shed, timed_out, canceled).");

        m.CreateObservableCounter("mproxy.tenant.ru", () => Accounts(a => a.RuCharged), "RU", "RU charged to the tenant (per resource group and its priority).");
        m.CreateObservableCounter("mproxy.tenant.admitted", () => Accounts(a => a.Admitted), "{query}", "Statements admitted, per tenant, group and priority.");
        m.CreateObservableCounter("mproxy.tenant.refused", TenantRefused, "{query}",
            "Statements refused, per tenant, group, priority and reason (budget: throttled for RU; shed: CoDel under load; queue_timeout; runaway: a runaway verdict).");
        m.CreateObservableCounter("mproxy.tenant.cancelled", () => Accounts(a => a.RunawayCancelled), "{query}", "Running statements cancelled by a runaway rule.");
        m.CreateObservableCounter("mproxy.tenant.budget_waits", () => Accounts(a => a.BudgetWaits), "{query}", "Statements that waited for the tenant's bucket to leave debt.");
        m.CreateObservableGauge("mproxy.tenant.budget_ru_per_second", () => AccountsDouble(a => a.Bucket.Settings.RuPerSecond), description: "The tenant's bucket refill rate in force (the group's, or the policy tier's lease).");
        m.CreateObservableGauge("mproxy.tenant.balance", () => AccountsDouble(a => a.Bucket.Balance), "RU", "The tenant's bucket balance (negative: debt).");

        m.CreateObservableCounter("mproxy.hints", Hints, "{hint}", "Magic-comment hint items, by outcome (applied, or why ignored).");
        m.CreateObservableCounter("mproxy.fingerprint.ru", FingerprintRu, "RU", "RU of the heaviest fingerprints (tenant, fingerprint); the rest as tenant=\"*\", fingerprint=\"other\".");

        m.CreateObservableGauge("mproxy.backend.up", () => Backends((_, b) => b.Reachable ? 1 : 0, withRole: true), description: "1 when the last health check of the backend succeeded.");
        m.CreateObservableGauge("mproxy.backend.breaker_state", () => Backends((_, b) => (int)b.Breaker, withRole: false), description: "Circuit breaker per backend: 0 closed, 1 half-open, 2 open.");
        m.CreateObservableGauge("mproxy.backend.serves_reads", () => Backends((_, b) => b.ServesReads ? 1 : 0, withRole: false), description: "1 when the backend takes reads (a healthy replica within the lag bound).");
        m.CreateObservableGauge("mproxy.replica.lag_bytes", () => Replicas(b => b.LagBytes), "By", "WAL bytes the replica has not replayed.");
        m.CreateObservableGauge("mproxy.replica.lag_seconds", () => Replicas(b => b.LagTime?.TotalSeconds), "s", "How far behind the primary the replica's replay is (a lower bound, to the probe interval).");

        m.CreateObservableGauge("mproxy.policy.state", PolicyState, description: "The policy tier connection: 1 for the current state (starting, connected, retrying, degraded).");
        m.CreateObservableGauge("mproxy.policy.degraded", () => _policy?.Status.IsDegraded == true ? 1 : 0, description: "1 while some tenant runs on a local-only share because the policy tier is unreachable.");
        m.CreateObservableGauge("mproxy.policy.degraded_tenants", () => _policy?.Status.DegradedTenants ?? 0, "{tenant}", "Tenants on a local-only share.");
        m.CreateObservableGauge("mproxy.policy.consecutive_failures", () => _policy?.Status.ConsecutiveFailures ?? 0, description: "Failed exchanges with the policy tier since the last success.");
        m.CreateObservableGauge("mproxy.policy.live_edges", () => _policy?.Status.LiveEdges ?? 1, "{edge}", "Live edges in the last membership view.");
        m.CreateObservableGauge("mproxy.policy.lease", Leases, description: "Per tenant: 1 for the source of its allowance now (lease, local_share, unlimited; configured: no lease yet, the group's budget).");
        m.CreateObservableGauge("mproxy.policy.allowance_ru_per_second", Allowances, description: "Per tenant: the RU/s this edge may spend now (lease or local share).");
    }

    private static KeyValuePair<string, object?> Tag(string key, string value) => new(key, value);

    private IEnumerable<Measurement<long>> DeferredBegins()
    {
        foreach (var cell in _telemetry.Queries.Snapshot())
        {
            var count = cell.DeferredBegins;
            if (count > 0)
                yield return new(count, Tag("database", cell.Database), Tag("tenant", cell.Tenant));
        }
    }

    private IEnumerable<Measurement<long>> Queries()
    {
        string[] types = ["unknown", "read", "write"];
        foreach (var cell in _telemetry.Queries.Snapshot())
        {
            for (var type = UnitType.Unknown; type <= UnitType.Write; type++)
            {
                foreach (var replica in new[] { false, true })
                {
                    var count = cell.Queries(type, replica);
                    if (count > 0)
                        yield return new(count, Tag("database", cell.Database), Tag("tenant", cell.Tenant), Tag("type", types[(int)type]), Tag("destination", replica ? "replica" : "primary"));
                }
            }
        }
    }

    private IEnumerable<Measurement<long>> Relayed()
    {
        foreach (var cell in _telemetry.Queries.Snapshot())
        {
            yield return new(cell.BytesToClient, Tag("database", cell.Database), Tag("tenant", cell.Tenant), Tag("direction", "to_client"));
            yield return new(cell.BytesToServer, Tag("database", cell.Database), Tag("tenant", cell.Tenant), Tag("direction", "to_server"));
        }
    }

    private static KeyValuePair<string, object?>[] PoolTags(PoolView pool) =>
        [Tag("database", pool.Database), Tag("user", pool.User), Tag("host", pool.Host)];

    private IEnumerable<Measurement<int>> PoolConnections()
    {
        foreach (var pool in _inventory.GetPools())
        {
            yield return new(pool.Stats.Active, [.. PoolTags(pool), Tag("state", "active")]);
            yield return new(pool.Stats.Idle, [.. PoolTags(pool), Tag("state", "idle")]);
            yield return new(pool.Stats.Opening, [.. PoolTags(pool), Tag("state", "opening")]);
        }
    }

    private IEnumerable<Measurement<int>> Pools(Func<PoolView, int> value)
    {
        foreach (var pool in _inventory.GetPools())
            yield return new(value(pool), PoolTags(pool));
    }

    private IEnumerable<Measurement<double>> PoolsDouble(Func<PoolView, double> value)
    {
        foreach (var pool in _inventory.GetPools())
            yield return new(value(pool), PoolTags(pool));
    }

    private IEnumerable<(string Pool, SchedulerStats Stats)> SchedulerStats()
    {
        foreach (var pool in _inventory.GetPools())
            if (pool.Scheduler is { } scheduler)
                yield return (scheduler.Name, scheduler.GetStats());
    }

    private IEnumerable<Measurement<int>> Schedulers(Func<SchedulerStats, int> value)
    {
        foreach (var (pool, stats) in SchedulerStats())
            yield return new(value(stats), Tag("pool", pool));
    }

    private IEnumerable<Measurement<int>> SchedulerWaiting()
    {
        foreach (var (pool, stats) in SchedulerStats())
        {
            yield return new(stats.WaitingHigh, Tag("pool", pool), Tag("priority", "high"));
            yield return new(stats.WaitingMedium, Tag("pool", pool), Tag("priority", "medium"));
            yield return new(stats.WaitingLow, Tag("pool", pool), Tag("priority", "low"));
        }
    }

    private IEnumerable<Measurement<long>> SchedulerOutcomes()
    {
        foreach (var (pool, stats) in SchedulerStats())
        {
            yield return new(stats.Granted, Tag("pool", pool), Tag("outcome", "granted"));
            yield return new(stats.Shed, Tag("pool", pool), Tag("outcome", "shed"));
            yield return new(stats.TimedOut, Tag("pool", pool), Tag("outcome", "timed_out"));
            yield return new(stats.Canceled, Tag("pool", pool), Tag("outcome", "canceled"));
        }
    }

    private IEnumerable<TenantAccount> AllAccounts()
    {
        if (_qos is not { Config.Enabled: true } gate)
            yield break;
        foreach (var tenant in gate.GetTenants())
            foreach (var account in tenant.GetAccounts())
                yield return account;
    }

    private static KeyValuePair<string, object?>[] AccountTags(TenantAccount account)
    {
        var group = account.Group;
        return [Tag("tenant", account.Tenant.Name), Tag("group", group.Name), Tag("priority", EdgeTelemetry.PriorityLabels[(int)group.Priority])];
    }

    private IEnumerable<Measurement<long>> Accounts(Func<TenantAccount, long> value)
    {
        foreach (var account in AllAccounts())
            yield return new(value(account), AccountTags(account));
    }

    private IEnumerable<Measurement<double>> Accounts(Func<TenantAccount, double> value)
    {
        foreach (var account in AllAccounts())
            yield return new(value(account), AccountTags(account));
    }

    private IEnumerable<Measurement<double>> AccountsDouble(Func<TenantAccount, double> value) => Accounts(value);

    private IEnumerable<Measurement<long>> TenantRefused()
    {
        foreach (var account in AllAccounts())
        {
            var tags = AccountTags(account);
            yield return new(account.BudgetRefused, [.. tags, Tag("reason", "budget")]);
            yield return new(account.Shed, [.. tags, Tag("reason", "shed")]);
            yield return new(account.QueueTimeouts, [.. tags, Tag("reason", "queue_timeout")]);
            yield return new(account.RunawayRefused, [.. tags, Tag("reason", "runaway")]);
        }
    }

    private IEnumerable<Measurement<long>> Hints()
    {
        if (_qos is not { } gate)
            yield break;
        var c = gate.HintCounters;
        yield return new(c.Applied, Tag("outcome", "applied"));
        yield return new(c.PriorityRaiseIgnored, Tag("outcome", "priority_raise_ignored"));
        yield return new(c.TimeoutExtendIgnored, Tag("outcome", "timeout_extend_ignored"));
        yield return new(c.InvalidIgnored, Tag("outcome", "invalid_ignored"));
        yield return new(c.GroupNotAllowedIgnored, Tag("outcome", "group_not_allowed_ignored"));
        yield return new(c.Malformed, Tag("outcome", "malformed"));
        yield return new(c.IgnoredByPolicy, Tag("outcome", "ignored_by_policy"));
    }

    private IEnumerable<Measurement<double>> FingerprintRu()
    {
        if (_qos is not { Config.Enabled: true } gate)
            yield break;
        var (top, others) = gate.Fingerprints.Snapshot();
        var otherRu = others.TotalRu;
        foreach (var cost in top)
        {
            _telemetry.Fingerprints.Resolve(cost.Tenant, cost.Fingerprint, out var tenant, out var fingerprint);
            if (ReferenceEquals(fingerprint, TopFingerprints.OtherFingerprint))
                otherRu += cost.TotalRu;
            else
                yield return new(cost.TotalRu, Tag("tenant", tenant), Tag("fingerprint", fingerprint));
        }
        yield return new(otherRu, Tag("tenant", TopFingerprints.OtherTenant), Tag("fingerprint", TopFingerprints.OtherFingerprint));
    }

    private static string RoleLabel(BackendRole role) => role switch
    {
        BackendRole.Primary => "primary",
        BackendRole.Replica => "replica",
        BackendRole.StalePrimary => "stale_primary",
        _ => "unknown",
    };

    private IEnumerable<Measurement<int>> Backends(Func<DatabaseBackends, BackendStatus, int> value, bool withRole)
    {
        foreach (var backends in _inventory.GetBackends())
        {
            var database = backends.Monitor.Database;
            foreach (var backend in backends.Topology.Backends)
            {
                yield return withRole
                    ? new(value(backends, backend), Tag("database", database), Tag("host", backend.Endpoint.ToString()), Tag("role", RoleLabel(backend.Role)))
                    : new(value(backends, backend), Tag("database", database), Tag("host", backend.Endpoint.ToString()));
            }
        }
    }

    private IEnumerable<Measurement<double>> Replicas(Func<BackendStatus, double?> value)
    {
        foreach (var backends in _inventory.GetBackends())
            foreach (var backend in backends.Topology.Backends)
                if (backend.Role == BackendRole.Replica && value(backend) is { } v)
                    yield return new(v, Tag("database", backends.Monitor.Database), Tag("host", backend.Endpoint.ToString()));
    }

    private IEnumerable<Measurement<int>> PolicyState()
    {
        if (_policy is null)
            yield break;
        var state = _policy.Status.State;
        foreach (var s in Enum.GetValues<PolicyClientState>())
            yield return new(s == state ? 1 : 0, Tag("state", s.ToString().ToLowerInvariant()));
    }

    private static string SourceLabel(AllowanceSource source) => source switch
    {
        AllowanceSource.Lease => "lease",
        AllowanceSource.LocalShare => "local_share",
        _ => "unlimited",
    };

    private IEnumerable<Measurement<int>> Leases()
    {
        if (_policy is null || _qos is not { Config.Enabled: true } gate)
            yield break;
        foreach (var tenant in gate.GetTenants())
        {
            // A tenant without an allowance (never leased: the policy tier has not answered for it
            // yet) runs on its group's configured budget.
            var source = _policy.TryGetAllowance(tenant.Name, out var allowance) ? SourceLabel(allowance.Source) : "configured";
            yield return new(1, Tag("tenant", tenant.Name), Tag("source", source));
        }
    }

    private IEnumerable<Measurement<double>> Allowances()
    {
        if (_policy is null || _qos is not { Config.Enabled: true } gate)
            yield break;
        foreach (var tenant in gate.GetTenants())
            if (_policy.TryGetAllowance(tenant.Name, out var allowance) && double.IsFinite(allowance.RuPerSecond))
                yield return new(allowance.RuPerSecond, Tag("tenant", tenant.Name));
    }

    private static IEnumerable<Measurement<double>> LoopSleeps(Networking.Epoll.EpollTransport epoll)
    {
        foreach (var loop in epoll.EventLoops)
        {
            var ratio = loop.SleepsPerEvent;
            if (double.IsFinite(ratio))
                yield return new Measurement<double>(ratio, new KeyValuePair<string, object?>("loop", loop.Index));
        }
    }
}
