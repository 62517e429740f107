using MProxy.Edge.Backends;
using MProxy.Edge.Pooling;
using MProxy.Edge.Qos;

namespace MProxy.Edge.Telemetry;

/// <summary>One pool of server connections, as metrics and the admin console show it.</summary>
internal sealed record PoolView(string Protocol, string Database, string User, string Host, string Mode, PoolStats Stats, QosScheduler? Scheduler);

/// <summary>
/// One server connection, as SHOW SERVERS shows it: <c>State</c> is active (serving a client), idle
/// or closed; <c>ClientId</c> the client it serves, if any; <c>Transaction</c> the server's
/// transaction status (idle, in-transaction, failed).
/// </summary>
internal sealed record ServerView(
    long Id, string Protocol, string Database, string User, string Host, string State, int? ClientId,
    TimeSpan Age, string Transaction, int PreparedStatements);

/// <summary>
/// What a protocol adapter has open: its pools, their server connections and the databases'
/// backends. Metrics and the admin console read it; they know nothing of any wire protocol.
/// </summary>
internal interface IEdgeInventory
{
    IReadOnlyList<PoolView> GetPools();

    IReadOnlyList<ServerView> GetServers();

    /// <summary>The monitored databases' backends (health, roles, lag, breakers).</summary>
    IReadOnlyList<DatabaseBackends> GetBackends();
}

/// <summary>Every protocol adapter's inventory as one: what metrics and the admin console read.</summary>
internal sealed class CombinedInventory(params IEdgeInventory[] parts) : IEdgeInventory
{
    public IReadOnlyList<PoolView> GetPools() => [.. parts.SelectMany(part => part.GetPools())];

    public IReadOnlyList<ServerView> GetServers() => [.. parts.SelectMany(part => part.GetServers())];

    public IReadOnlyList<DatabaseBackends> GetBackends() => [.. parts.SelectMany(part => part.GetBackends())];
}
