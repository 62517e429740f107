using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;
using MProxy.Edge.Backends;
using MProxy.Edge.Configuration;
using MProxy.Edge.Networking;
using MProxy.Edge.Pooling;

namespace MProxy.Edge.Protocols.Postgres;

/// <summary>
/// The PostgreSQL pools of this edge — one per (database, server user, host), created on first use —
/// and, for databases with several hosts or health checks, their <see cref="DatabaseBackends"/>
/// (monitor, balancer, router). When a host's breaker opens or the primary changes, that host's
/// pools are closed: their connections are likely dead.
/// </summary>
internal sealed class PgPoolRegistry(INetworkConnector connector, TimeProvider time, ILoggerFactory loggers, MProxy.Edge.Qos.QosGate? qos = null) : IAsyncDisposable
{
    private readonly ConcurrentDictionary<(string Database, string User, HostPort Host), PgPool> _pools = new();
    private readonly ConcurrentDictionary<(string Database, string User, HostPort Host), PoolMemory<IReadOnlyList<KeyValuePair<string, string>>>> _memories = new();
    private readonly ConcurrentDictionary<string, PgStatementCatalog> _catalogs = new();
    private readonly ILogger _log = loggers.CreateLogger("MProxy.Edge.Postgres.Pool");
    private readonly ILogger _backendsLog = loggers.CreateLogger("MProxy.Edge.Backends");
    private BackendsRegistry? _backendSet;

    /// <summary>This adapter's databases' backends, with its own health check; they close a host's pools when it is lost.</summary>
    private BackendsRegistry BackendSet => LazyInitializer.EnsureInitialized(ref _backendSet,
        () => new BackendsRegistry(DatabaseProtocol.Postgres, (database, monitor) => new PgBackendProbe(monitor, database.ServerTls.Mode == ServerTlsMode.Disable ? connector : new PgServerTls.Connector(connector, database.ServerTls), time, _backendsLog), CloseHost, time, _backendsLog));

    /// <summary>The protocol's name in metrics, traces and the admin console.</summary>
    public const string Protocol = "postgresql";

    public ICollection<PgPool> All => _pools.Values;

    public ICollection<DatabaseBackends> AllBackends => BackendSet.All;

    /// <summary>The pool of <paramref name="host"/> (default: the database's configured primary) for this client's server login.</summary>
    public PgPool GetOrCreate(EdgeConfig config, DatabaseConfig database, UserConfig? user, string clientUser, HostPort? host = null, int backendIndex = 0)
    {
        var serverUser = database.ServerUser ?? clientUser;
        var endpoint = host ?? database.Primary;
        if (_pools.TryGetValue((database.Name, serverUser, endpoint), out var pool))
            return pool;
        var password = database.ServerUser is not null ? database.ServerPassword : user?.ServerPassword ?? user?.Password;
        var backends = BackendsFor(database);
        var catalog = _catalogs.GetOrAdd(database.Name, _ => new PgStatementCatalog(capacity: 100_000));
        return _pools.GetOrAdd((database.Name, serverUser, endpoint), key => new PgPool(database, serverUser, password, config.Clients.MaxMessageBytes, connector, time, _log)
        {
            Memory = _memories.GetOrAdd(key, _ => new()),
            Endpoint = endpoint,
            BackendIndex = backendIndex,
            Backends = backends,
            Catalog = catalog,
            Scheduler = qos is { Config.Enabled: true } ? qos.CreateScheduler($"{database.Name}/{serverUser}@{endpoint}", database.Pool.Size) : null,
        });
    }

    /// <summary>The database's monitor, balancer and router (started on first use), or null for a single unmonitored host.</summary>
    public DatabaseBackends? BackendsFor(DatabaseConfig database) => BackendSet.For(database);

    private void CloseHost(string database, HostPort host, string reason)
    {
        foreach (var (key, pool) in _pools)
        {
            if (key.Database != database || key.Host != host || !_pools.TryRemove(new(key, pool)))
                continue;
            PgLog.PoolClosed(_log, pool.Name, host.ToString(), reason);
            pool.Connections.Close($"host {host}: {reason}");
        }
    }

    /// <summary>Periodic upkeep of every pool (the janitor calls it).</summary>
    public void Maintain()
    {
        foreach (var pool in _pools.Values)
            pool.Connections.Maintain();
    }

    /// <summary>Every pool with its database, for the policy tier's connection slots (<see cref="PoolCapacity"/>).</summary>
    public IEnumerable<(string Database, ISlotLimitedPool Pool)> SlotPools()
    {
        foreach (var (key, pool) in _pools)
            yield return (key.Database, pool.Connections);
    }

    /// <summary>Applies a new configuration: pools of removed or moved databases close, the others take their new settings.</summary>
    public void Reconfigure(EdgeConfig config)
    {
        foreach (var (key, pool) in _pools)
        {
            var database = config.FindDatabase(key.Database);
            if (database is null || database.ServerDatabase != pool.Database.ServerDatabase || database.Backends != pool.Database.Backends)
            {
                if (_pools.TryRemove(new(key, pool)))
                    pool.Connections.Close("a reload removed or changed its database");
            }
            else
            {
                pool.Reconfigure(database, qos?.Config.CoDel);
            }
        }
        BackendSet.Reconfigure(config);
    }

    public void CloseAll()
    {
        foreach (var pool in _pools.Values)
            pool.Connections.Close();
    }

    public async ValueTask DisposeAsync()
    {
        CloseAll();
        await BackendSet.DisposeAsync();
    }
}
