using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;
using MProxy.Edge.Configuration;
using MProxy.Edge.Networking;
using MProxy.Edge.Pooling;

namespace MProxy.Edge.Protocols.MySql;

/// <summary>The MySQL pools of this edge, one per (database, server user, variant), created on first use.</summary>
internal sealed class MySqlPoolRegistry(INetworkConnector connector, TimeProvider time, ILoggerFactory loggers, MProxy.Edge.Qos.QosGate? qos = null)
{
    /// <summary>The version the edge announces before any server has told it its own.</summary>
    public const string DefaultServerVersion = "5.7.99-mproxy";

    private readonly ConcurrentDictionary<(string Database, string User, MySqlPoolVariant Variant), MySqlPool> _pools = new();
    private readonly ILogger _log = loggers.CreateLogger("MProxy.Edge.MySql.Pool");
    private volatile string _serverVersion = DefaultServerVersion;

    public ICollection<MySqlPool> All => _pools.Values;

    /// <summary>The version the last server connection announced; what the edge's handshake announces.</summary>
    public string ServerVersion => _serverVersion;

    public MySqlPool GetOrCreate(DatabaseConfig database, UserConfig? user, string clientUser, MySqlPoolVariant variant)
    {
        var serverUser = database.ServerUser ?? clientUser;
        var key = (database.Name, serverUser, variant);
        if (_pools.TryGetValue(key, out var pool))
            return pool;
        var password = database.ServerUser is not null ? database.ServerPassword : user?.ServerPassword ?? user?.Password;
        return _pools.GetOrAdd(key, _ => new MySqlPool(database, serverUser, password, variant, connector, time, _log, v => _serverVersion = v)
        {
            Scheduler = qos is { Config.Enabled: true } ? qos.CreateScheduler($"{database.Name}/{serverUser}", database.Pool.Size) : null,
        });
    }

    /// <summary>Every pool with its database, for the policy tier's connection slots (<see cref="PoolCapacity"/>).</summary>
    public IEnumerable<(string Database, ISlotLimitedPool Pool)> SlotPools()
    {
        foreach (var (key, pool) in _pools)
            yield return (key.Database, pool.Connections);
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
            if (database is null || database.Protocol != DatabaseProtocol.MySql || database.Primary != pool.Database.Primary || database.ServerDatabase != pool.Database.ServerDatabase)
            {
                if (_pools.TryRemove(new(key, pool)))
                    pool.Connections.Close();
            }
            else
            {
                pool.Reconfigure(database, qos?.Config.CoDel);
            }
        }
    }

    public void CloseAll()
    {
        foreach (var pool in _pools.Values)
            pool.Connections.Close();
    }
}
