using MProxy.Edge.Backends;
using MProxy.Edge.Configuration;
using MProxy.Edge.Telemetry;

namespace MProxy.Edge.Protocols.Postgres;

/// <summary>The PostgreSQL adapter's pools, server connections and backends, for metrics and the admin console.</summary>
internal sealed class PgInventory(PgPoolRegistry pools, TimeProvider time) : IEdgeInventory
{
    public const string Protocol = "postgresql";

    public IReadOnlyList<PoolView> GetPools()
    {
        var views = new List<PoolView>();
        foreach (var pool in pools.All)
        {
            views.Add(new PoolView(Protocol, pool.Database.Name, pool.ServerUser, pool.Endpoint.ToString(),
                pool.Mode == PoolMode.Session ? "session" : "transaction", pool.Connections.GetStats(), pool.Scheduler));
        }
        return views;
    }

    public IReadOnlyList<ServerView> GetServers()
    {
        var views = new List<ServerView>();
        var now = time.GetTimestamp();
        foreach (var pool in pools.All)
        {
            foreach (var server in pool.Live)
            {
                var state = server.State switch
                {
                    ServerConnectionState.Attached => "active",
                    ServerConnectionState.Broken => "closed",
                    _ => "idle",
                };
                var transaction = server.TransactionStatus switch
                {
                    PgTransactionStatus.InTransaction => "in-transaction",
                    PgTransactionStatus.Failed => "failed",
                    _ => "idle",
                };
                views.Add(new ServerView(server.Id, Protocol, pool.Database.Name, pool.ServerUser, server.Endpoint.ToString(), state,
                    server.Client?.ProcessId, time.GetElapsedTime(server.OpenedAt, now), transaction, server.PreparedStatementCount));
            }
        }
        return views;
    }

    public IReadOnlyList<DatabaseBackends> GetBackends() => [.. pools.AllBackends];
}
