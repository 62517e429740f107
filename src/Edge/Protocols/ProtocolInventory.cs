using MProxy.Edge.Backends;
using MProxy.Edge.Configuration;
using MProxy.Edge.Pooling;
using MProxy.Edge.Qos;
using MProxy.Edge.Telemetry;

namespace MProxy.Edge.Protocols;

/// <summary>A protocol's pool of one host, as metrics and the admin console list it.</summary>
internal interface IInventoriedPool
{
    DatabaseConfig Database { get; }

    string ServerUser { get; }

    HostPort Endpoint { get; }

    PoolMode Mode { get; }

    QosScheduler? Scheduler { get; }

    PoolStats GetStats();

    /// <summary>The pool's open server connections.</summary>
    IEnumerable<IInventoriedServer> Servers { get; }
}

/// <summary>A protocol's server connection, as SHOW SERVERS lists it.</summary>
internal interface IInventoriedServer
{
    long Id { get; }

    ServerConnectionState State { get; }

    HostPort Endpoint { get; }

    long OpenedAt { get; }

    int PreparedStatementCount { get; }

    /// <summary>The edge's id of the client served now, if any.</summary>
    int? ClientId { get; }

    /// <summary>The server's transaction status: idle, in-transaction or failed.</summary>
    string Transaction { get; }
}

/// <summary>One protocol adapter's pools, server connections and backends, for metrics and the admin console.</summary>
internal sealed class ProtocolInventory(
    string protocol, Func<IEnumerable<IInventoriedPool>> pools, Func<IEnumerable<DatabaseBackends>> backends, TimeProvider time) : IEdgeInventory
{
    public IReadOnlyList<PoolView> GetPools() =>
        [.. pools().Select(pool => new PoolView(protocol, pool.Database.Name, pool.ServerUser, pool.Endpoint.ToString(),
            pool.Mode == PoolMode.Session ? "session" : "transaction", pool.GetStats(), pool.Scheduler))];

    public IReadOnlyList<ServerView> GetServers()
    {
        var views = new List<ServerView>();
        var now = time.GetTimestamp();
        foreach (var pool in pools())
        {
            foreach (var server in pool.Servers)
            {
                var state = server.State switch
                {
                    ServerConnectionState.Attached => "active",
                    ServerConnectionState.Broken => "closed",
                    _ => "idle",
                };
                views.Add(new ServerView(server.Id, protocol, pool.Database.Name, pool.ServerUser, server.Endpoint.ToString(), state,
                    server.ClientId, time.GetElapsedTime(server.OpenedAt, now), server.Transaction, server.PreparedStatementCount));
            }
        }
        return views;
    }

    public IReadOnlyList<DatabaseBackends> GetBackends() => [.. backends()];
}
