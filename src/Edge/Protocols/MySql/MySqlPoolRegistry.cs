using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;
using MProxy.Edge.Backends;
using MProxy.Edge.Configuration;
using MProxy.Edge.Networking;
using MProxy.Edge.Pooling;

namespace MProxy.Edge.Protocols.MySql;

/// <summary>
/// The MySQL pools of this edge — one per (database, server user, variant, host), created on first
/// use — and, for databases with a <c>backends:</c> section and a monitor, their
/// <see cref="DatabaseBackends"/> (monitor with <see cref="MySqlBackendProbe"/>, balancer, router).
/// When a host's breaker opens or it stops being the primary, that host's pools are closed.
/// </summary>
internal sealed class MySqlPoolRegistry(INetworkConnector connector, TimeProvider time, ILoggerFactory loggers, MProxy.Edge.Qos.QosGate? qos = null) : IAsyncDisposable
{
    /// <summary>The version the edge announces before any server has told it its own.</summary>
    public const string DefaultServerVersion = "5.7.99-mproxy";

    private readonly ConcurrentDictionary<(string Database, string User, MySqlPoolVariant Variant, HostPort Host), MySqlPool> _pools = new();
    private readonly ConcurrentDictionary<(string Database, string User, MySqlPoolVariant Variant, HostPort Host), PoolMemory<string>> _memories = new();
    private readonly ILogger _log = loggers.CreateLogger("MProxy.Edge.MySql.Pool");
    private readonly ILogger _backendsLog = loggers.CreateLogger("MProxy.Edge.Backends");
    private BackendsRegistry? _backendSet;

    /// <summary>This adapter's databases' backends, with its own health check; they close a host's pools when it is lost.</summary>
    private BackendsRegistry BackendSet => LazyInitializer.EnsureInitialized(ref _backendSet,
        () => new BackendsRegistry(DatabaseProtocol.MySql, (_, monitor) => new MySqlBackendProbe(monitor, connector, time, _backendsLog), CloseHost, time, _backendsLog));
    private volatile string _serverVersion = DefaultServerVersion;

    /// <summary>The protocol's name in metrics, traces and the admin console.</summary>
    public const string Protocol = "mysql";

    public ICollection<MySqlPool> All => _pools.Values;

    /// <summary>The version the last server connection announced; what the edge's handshake announces.</summary>
    public string ServerVersion => _serverVersion;

    public ICollection<DatabaseBackends> AllBackends => BackendSet.All;

    /// <summary>The pool of <paramref name="host"/> (default: the database's configured primary) for this client's server login.</summary>
    public MySqlPool GetOrCreate(DatabaseConfig database, UserConfig? user, string clientUser, MySqlPoolVariant variant, HostPort? host = null, int backendIndex = 0)
    {
        var serverUser = database.ServerUser ?? clientUser;
        var endpoint = host ?? database.Primary;
        var key = (database.Name, serverUser, variant, endpoint);
        if (_pools.TryGetValue(key, out var pool))
            return pool;
        var password = database.ServerUser is not null ? database.ServerPassword : user?.ServerPassword ?? user?.Password;
        var backends = BackendsFor(database);
        var schedulerName = backends is null ? $"{database.Name}/{serverUser}" : $"{database.Name}/{serverUser}@{endpoint}";
        return _pools.GetOrAdd(key, _ => new MySqlPool(database, serverUser, password, variant, connector, time, _log, v => _serverVersion = v)
        {
            Memory = _memories.GetOrAdd(key, _ => new()),
            Endpoint = endpoint,
            BackendIndex = backendIndex,
            Backends = backends,
            Scheduler = qos is { Config.Enabled: true } ? qos.CreateScheduler(schedulerName, database.Pool.Size) : null,
        });
    }

    /// <summary>Every pool with its database, for the policy tier's connection slots (<see cref="PoolCapacity"/>).</summary>
    public IEnumerable<(string Database, ISlotLimitedPool Pool)> SlotPools()
    {
        foreach (var (key, pool) in _pools)
            yield return (key.Database, pool.Connections);
    }

    /// <summary>The database's monitor, balancer and router (started on first use), or null for a single unmonitored host.</summary>
    public DatabaseBackends? BackendsFor(DatabaseConfig database) => BackendSet.For(database);

    private void CloseHost(string database, HostPort host, string reason)
    {
        foreach (var (key, pool) in _pools)
        {
            if (key.Database != database || key.Host != host || !_pools.TryRemove(new(key, pool)))
                continue;
            MySqlLog.PoolClosed(_log, pool.Name, host.ToString(), reason);
            pool.Connections.Close($"host {host}: {reason}");
        }
    }

    /// <summary>Periodic upkeep of every pool (the janitor calls it).</summary>
    public void Maintain()
    {
        foreach (var pool in _pools.Values)
            pool.Connections.Maintain();
    }

    /// <summary>Applies a new configuration: pools of removed databases close, the others take their new settings.</summary>
    public void Reconfigure(EdgeConfig config)
    {
        foreach (var (key, pool) in _pools)
        {
            var database = config.FindDatabase(key.Database);
            if (database is null || database.Protocol != DatabaseProtocol.MySql || database.Primary != pool.Database.Primary || database.ServerDatabase != pool.Database.ServerDatabase
                || database.Backends != pool.Database.Backends)
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
