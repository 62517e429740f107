using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.Logging;
using MProxy.Edge.Configuration;
using MProxy.Edge.Networking;
using MProxy.Edge.Pooling;

namespace MProxy.Edge.Protocols.MySql;

/// <summary>
/// What makes server connections interchangeable for a client beyond its database and user: the
/// capabilities and character set fixed at login, which a pooled connection cannot change later.
/// </summary>
internal readonly record struct MySqlPoolVariant(bool FoundRows, byte Collation);

/// <summary>
/// The server connections of one (database, server user, variant, host) upstream: the MySQL side of a
/// <see cref="ServerPool{TConnection}"/> — how to open, check, reset and close a connection.
/// </summary>
internal sealed class MySqlPool : IServerConnectionFactory<MySqlServerConnection>, IBackendPool, IInventoriedPool
{
    private readonly INetworkConnector _connector;
    private readonly TimeProvider _time;
    private readonly ILogger _log;
    private readonly Action<string> _onServerVersion;
    private volatile DatabaseConfig _database;
    private readonly System.Collections.Concurrent.ConcurrentDictionary<long, MySqlServerConnection> _live = new();
    private readonly HostPort? _endpoint;

    public MySqlPool(DatabaseConfig database, string serverUser, string? serverPassword, MySqlPoolVariant variant, INetworkConnector connector, TimeProvider time, ILogger log, Action<string> onServerVersion)
    {
        _database = database;
        ServerUser = serverUser;
        ServerPassword = serverPassword;
        Variant = variant;
        _connector = connector;
        _time = time;
        _log = log;
        _onServerVersion = onServerVersion;
        Name = $"{database.Name}/{serverUser}";
        Connections = new ServerPool<MySqlServerConnection>(Name, ToSettings(database.Pool), this, time);
    }

    public string Name { get; }

    public string ServerUser { get; }

    private string? ServerPassword { get; }

    public MySqlPoolVariant Variant { get; }

    public DatabaseConfig Database => _database;

    public PoolMode Mode => _database.Pool.Mode;

    /// <summary>The host this pool connects to: one of the database's backends, by default its primary.</summary>
    public HostPort Endpoint
    {
        get => _endpoint ?? _database.Primary;
        init => _endpoint = value;
    }

    /// <summary>The host's index in <see cref="Backends"/> (its breaker, balancer slot and snapshot entry).</summary>
    public int BackendIndex { get; init; }

    /// <summary>The database's monitor, balancer and router, when it has health checks.</summary>
    public MProxy.Edge.Backends.DatabaseBackends? Backends { get; init; }

    /// <summary>Whether this pool's host is the primary now (always, without health checks).</summary>
    public bool IsPrimary => Backends is not { } backends || backends.Topology.PrimaryIndex == BackendIndex;

    public ServerPool<MySqlServerConnection> Connections { get; }

    /// <summary>The pool's open server connections, leased or idle (for SHOW SERVERS).</summary>
    public ICollection<MySqlServerConnection> Live => _live.Values;

    IEnumerable<IInventoriedServer> IInventoriedPool.Servers => Live;

    public PoolStats GetStats() => Connections.GetStats();

    /// <summary>The QoS scheduler in front of this pool (its capacity is the pool's size), when QoS is on.</summary>
    public MProxy.Edge.Qos.QosScheduler? Scheduler { get; init; }

    /// <summary>Whether a server connection was ever opened for this pool's key (the first client's login opens one to check the credentials).</summary>
    public bool HasConnected => Memory.Value is not null;

    /// <summary>The version this pool's key's first server connection announced: the registry's, so that it outlives the pool.</summary>
    public required PoolMemory<string> Memory { get; init; }

    public void Reconfigure(DatabaseConfig database, MProxy.Edge.Qos.CoDelSettings? codel)
    {
        _database = database;
        Connections.Reconfigure(ToSettings(database.Pool));
        if (codel is not null)
            Scheduler?.Reconfigure(database.Pool.Size, codel);
    }

    public static PoolSettings ToSettings(PoolConfig pool) =>
        new(pool.Size, pool.MinSize, pool.WaitTimeout, pool.ConnectTimeout, pool.IdleTimeout, pool.Lifetime, pool.CheckAfterIdle);

    private MySqlLoginRequest LoginRequest(DatabaseConfig database)
    {
        var capabilities = MySqlServerLogin.Wanted;
        if (Variant.FoundRows)
            capabilities |= MySqlCapabilities.FoundRows;
        if (database.AllowLoadDataLocal)
            capabilities |= MySqlCapabilities.LocalFiles;
        return new MySqlLoginRequest(ServerUser, ServerPassword, database.ServerDatabase, Variant.Collation, capabilities);
    }

    /// <summary>Connects and logs in, outside the pool (for KILL QUERY).</summary>
    private async Task<(ConnectionContext Transport, MySqlServerHandshake Handshake)> ConnectAsync(DatabaseConfig database, CancellationToken cancellationToken)
    {
        var transport = await _connector.ConnectAsync(Endpoint, cancellationToken);
        try
        {
            var handshake = await MySqlServerLogin.LoginAsync(transport.Transport.Input, transport.Transport.Output, LoginRequest(database), cancellationToken);
            return (transport, handshake);
        }
        catch
        {
            await transport.DisposeAsync();
            throw;
        }
    }

    public async ValueTask<MySqlServerConnection> OpenAsync(CancellationToken cancellationToken)
    {
        var database = _database;
        using var timeout = new CancellationTokenSource(database.Pool.ConnectTimeout, _time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
        try
        {
            var (transport, handshake) = await ConnectAsync(database, linked.Token);
            var connection = new MySqlServerConnection(this, transport, handshake, Endpoint, _time.GetTimestamp(), _log);
            connection.Start();
            _live[connection.Id] = connection;
            Memory.Learn(handshake.ServerVersion);
            _onServerVersion(handshake.ServerVersion);
            Backends?.Monitor.ReportConnectSuccess(BackendIndex);
            MySqlLog.ServerOpened(_log, connection.Id, Endpoint.ToString(), Name);
            return connection;
        }
        catch (Exception e)
        {
            var reason = e switch
            {
                OperationCanceledException when timeout.IsCancellationRequested => $"no answer within {database.Pool.ConnectTimeout.TotalMilliseconds:0} ms",
                MySqlServerLoginException login => $"{login.Message} ({login.Code}/{login.SqlState})",
                _ => e.Message,
            };
            MySqlLog.ServerOpenFailed(_log, Endpoint.ToString(), Name, reason);
            if (e is OperationCanceledException && !timeout.IsCancellationRequested)
                throw;
            // The host is unreachable or broke the protocol: the breaker counts it. A refused login, a
            // full server or an unknown database say nothing about the host's health.
            if (e is not MySqlServerLoginException refusal || refusal.SqlState.StartsWith("08", StringComparison.Ordinal) || refusal.Code == 2013)
                Backends?.Monitor.ReportConnectFailure(BackendIndex, reason);
            var error = e is MySqlServerLoginException { Code: 1045 } ? MySqlError.AccessDenied : MySqlError.ServerShutdown;
            throw new MySqlErrorException(error, $"mproxy: cannot connect to server {Endpoint} for pool {Name}: {reason} [57P03]");
        }
    }

    public async ValueTask<bool> CheckAsync(MySqlServerConnection connection, CancellationToken cancellationToken)
    {
        using var timeout = new CancellationTokenSource(_database.Pool.ConnectTimeout, _time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
        var error = await connection.RunInternalAsync(MySqlCommandCode.Ping, MySqlResponseKind.Ok, default, resets: false, linked.Token);
        return error is null && (connection.Status & MySqlServerStatus.InTransaction) == 0;
    }

    public void Close(MySqlServerConnection connection, string reason)
    {
        MySqlLog.ServerClosed(_log, connection.Id, reason);
        _live.TryRemove(connection.Id, out _);
        _ = connection.CloseAsync().AsTask();
    }

    public void Return(MySqlServerConnection connection) => Connections.Return(connection);

    public void Discard(MySqlServerConnection connection, string reason) => Connections.Discard(connection, reason);

    /// <summary>
    /// COM_RESET_CONNECTION on a connection a client left with a transaction, autocommit off or
    /// session state (rolls back, drops user variables, temporary tables, locks and prepared
    /// statements, restores session variables); then returns it, or discards it if that fails.
    /// </summary>
    public async Task ResetAndReturnAsync(MySqlServerConnection connection)
    {
        try
        {
            using var timeout = new CancellationTokenSource(_database.Pool.ConnectTimeout, _time);
            if (await connection.RunInternalAsync(MySqlCommandCode.ResetConnection, MySqlResponseKind.Ok, default, resets: true, timeout.Token) is { } error)
                throw new InvalidOperationException(error);
            if ((connection.Status & MySqlServerStatus.InTransaction) != 0)
                throw new InvalidOperationException("still in a transaction after the reset");
            Return(connection);
        }
        catch (Exception e)
        {
            Discard(connection, "could not be reset after its client left: " + e.Message);
        }
    }

    /// <summary>Asks the server to stop what <paramref name="connection"/> is running: KILL QUERY on a separate connection.</summary>
    public async Task CancelAsync(MySqlServerConnection connection)
    {
        try
        {
            using var timeout = new CancellationTokenSource(_database.Pool.ConnectTimeout, _time);
            var (transport, _) = await ConnectAsync(_database, timeout.Token);
            await using (transport)
            {
                MySqlPacketWriter.WriteQuery(transport.Transport.Output, "KILL QUERY " + connection.ConnectionId.ToString(System.Globalization.CultureInfo.InvariantCulture));
                await transport.Transport.Output.FlushAsync(timeout.Token);
                await MySqlServerLogin.ReadPacketAsync(transport.Transport.Input, timeout.Token);
                MySqlPacketWriter.WriteCommand(transport.Transport.Output, MySqlCommandCode.Quit);
                await transport.Transport.Output.FlushAsync(timeout.Token);
            }
        }
        catch (Exception e)
        {
            MySqlLog.ServerConnectionFailed(_log, connection.Id, connection.Endpoint.ToString(), "KILL QUERY failed: " + e.Message);
        }
    }
}
