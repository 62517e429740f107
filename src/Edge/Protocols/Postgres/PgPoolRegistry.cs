using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;
using MProxy.Edge.Configuration;
using MProxy.Edge.Networking;

namespace MProxy.Edge.Protocols.Postgres;

/// <summary>The PostgreSQL pools of this edge, one per (database, server user), created on first use.</summary>
internal sealed class PgPoolRegistry(INetworkConnector connector, TimeProvider time, ILoggerFactory loggers, MProxy.Edge.Qos.QosGate? qos = null)
{
    private readonly ConcurrentDictionary<(string Database, string User), PgPool> _pools = new();
    private readonly ILogger _log = loggers.CreateLogger("MProxy.Edge.Postgres.Pool");

    public ICollection<PgPool> All => _pools.Values;

    public PgPool GetOrCreate(EdgeConfig config, DatabaseConfig database, UserConfig? user, string clientUser)
    {
        var serverUser = database.ServerUser ?? clientUser;
        if (_pools.TryGetValue((database.Name, serverUser), out var pool))
            return pool;
        var password = database.ServerUser is not null ? database.ServerPassword : user?.ServerPassword ?? user?.Password;
        return _pools.GetOrAdd((database.Name, serverUser), _ => new PgPool(database, serverUser, password, config.Clients.MaxMessageBytes, connector, time, _log)
        {
            Scheduler = qos is { Config.Enabled: true } ? qos.CreateScheduler($"{database.Name}/{serverUser}", database.Pool.Size) : null,
        });
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
        foreach (var ((name, user), pool) in _pools)
        {
            var database = config.FindDatabase(name);
            if (database is null || database.Primary != pool.Database.Primary || database.ServerDatabase != pool.Database.ServerDatabase)
            {
                if (_pools.TryRemove(new((name, user), pool)))
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
