using Microsoft.Extensions.Logging;
using MProxy.Edge.Configuration;
using MProxy.Edge.Networking;
using MProxy.Edge.Pooling;

namespace MProxy.Edge.Protocols.Postgres;

/// <summary>
/// The server connections of one (database, server user) upstream: the PostgreSQL side of a
/// <see cref="ServerPool{TConnection}"/> — how to open, check, clean and close a connection.
/// </summary>
internal sealed class PgPool : IServerConnectionFactory<PgServerConnection>, IBackendPool, IInventoriedPool
{
    private readonly INetworkConnector _connector;
    private readonly TimeProvider _time;
    private readonly ILogger _log;
    private volatile DatabaseConfig _database;
    private readonly System.Collections.Concurrent.ConcurrentDictionary<long, PgServerConnection> _live = new();

    public PgPool(DatabaseConfig database, string serverUser, string? serverPassword, int maxMessageBytes, INetworkConnector connector, TimeProvider time, ILogger log)
    {
        _database = database;
        ServerUser = serverUser;
        ServerPassword = serverPassword;
        MaxMessageBytes = maxMessageBytes;
        _connector = connector;
        _time = time;
        _log = log;
        Name = $"{database.Name}/{serverUser}";  // hosts other than the primary add "@host" in messages
        Connections = new ServerPool<PgServerConnection>(Name, ToSettings(database.Pool), this, time);
    }

    public string Name { get; }

    public string ServerUser { get; }

    private string? ServerPassword { get; }

    public int MaxMessageBytes { get; }

    public DatabaseConfig Database => _database;

    public PoolMode Mode => _database.Pool.Mode;

    public ServerPool<PgServerConnection> Connections { get; }

    /// <summary>The pool's open server connections, leased or idle (for SHOW SERVERS).</summary>
    public ICollection<PgServerConnection> Live => _live.Values;

    IEnumerable<IInventoriedServer> IInventoriedPool.Servers => Live;

    public PoolStats GetStats() => Connections.GetStats();

    /// <summary>The distinct statements clients prepared on this pool, shared by every client that prepares the same text.</summary>
    public required PgStatementCatalog Catalog { get; init; }

    /// <summary>The host this pool's connections go to.</summary>
    public required HostPort Endpoint { get; init; }

    /// <summary>The host's index among the database's backends (for the monitor and the balancer).</summary>
    public int BackendIndex { get; init; }

    /// <summary>The database's monitor, balancer and router, when it has them.</summary>
    public MProxy.Edge.Backends.DatabaseBackends? Backends { get; init; }

    /// <summary>Whether clients' named statements are virtualized (transaction mode with a statement budget per connection).</summary>
    public bool VirtualizesStatements => Mode == PoolMode.Transaction && _database.Pool.MaxPreparedStatements > 0;

    /// <summary>Whether the edge answers clients' plain BEGIN itself and sends it with the transaction's first statement (transaction mode).</summary>
    public bool DefersBegin => Mode == PoolMode.Transaction && _database.Pool.DeferBegin;

    /// <summary>The QoS scheduler in front of this pool (its capacity is the pool's size), when QoS is on.</summary>
    public MProxy.Edge.Qos.QosScheduler? Scheduler { get; init; }

    /// <summary>The ParameterStatus set the first server connection reported; what clients are greeted with.</summary>
    public IReadOnlyList<KeyValuePair<string, string>>? Welcome => Memory.Value;

    /// <summary>Where <see cref="Welcome"/> is kept: the registry's, under this pool's key, so that it outlives the pool.</summary>
    public required PoolMemory<IReadOnlyList<KeyValuePair<string, string>>> Memory { get; init; }

    public void Reconfigure(DatabaseConfig database, MProxy.Edge.Qos.CoDelSettings? codel)
    {
        _database = database;
        Connections.Reconfigure(ToSettings(database.Pool));
        if (codel is not null)
            Scheduler?.Reconfigure(database.Pool.Size, codel);
    }

    public static PoolSettings ToSettings(PoolConfig pool) =>
        new(pool.Size, pool.MinSize, pool.WaitTimeout, pool.ConnectTimeout, pool.IdleTimeout, pool.Lifetime, pool.CheckAfterIdle);

    public async ValueTask<PgServerConnection> OpenAsync(CancellationToken cancellationToken)
    {
        var database = _database;
        using var timeout = new CancellationTokenSource(database.Pool.ConnectTimeout, _time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
        Microsoft.AspNetCore.Connections.ConnectionContext? transport = null;
        try
        {
            transport = await PgServerTls.ConnectAsync(_connector, Endpoint, database.ServerTls, linked.Token);
            var startup = await PgServerLogin.LoginAsync(
                transport.Transport.Input, transport.Transport.Output, ServerUser, database.ServerDatabase, ServerPassword, MaxMessageBytes, linked.Token);
            var connection = new PgServerConnection(this, transport, startup, Endpoint, _time.GetTimestamp(), _log);
            connection.Start();
            _live[connection.Id] = connection;
            Memory.Learn(startup.Parameters);
            Backends?.Monitor.ReportConnectSuccess(BackendIndex);
            PgLog.ServerOpened(_log, connection.Id, Endpoint.ToString(), Name);
            return connection;
        }
        catch (Exception e)
        {
            if (transport is not null)
                await transport.DisposeAsync();
            var reason = e switch
            {
                OperationCanceledException when timeout.IsCancellationRequested => $"no answer within {database.Pool.ConnectTimeout.TotalMilliseconds:0} ms",
                PgServerLoginException login => $"{login.Message} ({login.SqlState})",
                _ => e.Message,
            };
            PgLog.ServerOpenFailed(_log, Endpoint.ToString(), Name, reason);
            if (e is OperationCanceledException && !timeout.IsCancellationRequested)
                throw;
            // The host is unreachable or refusing service: the breaker counts it. Authentication,
            // a full server or an unknown database say nothing about the host's health.
            var loginState = (e as PgServerLoginException)?.SqlState;
            if (loginState is null || loginState.StartsWith("08", StringComparison.Ordinal) || loginState is PgSqlState.AdminShutdown or PgSqlState.CannotConnectNow)
                Backends?.Monitor.ReportConnectFailure(BackendIndex, reason);
            var sqlState = loginState is not null && loginState.StartsWith("28", StringComparison.Ordinal) ? loginState : PgSqlState.CannotConnectNow;
            throw new PgErrorException(sqlState, $"mproxy: cannot connect to server {Endpoint} for pool {Name}: {reason}");
        }
    }

    public async ValueTask<bool> CheckAsync(PgServerConnection connection, CancellationToken cancellationToken)
    {
        using var timeout = new CancellationTokenSource(_database.Pool.ConnectTimeout, _time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
        var error = await connection.RunInternalAsync(_database.Pool.CheckQuery, linked.Token);
        return error is null && connection.TransactionStatus == PgTransactionStatus.Idle;
    }

    public void Close(PgServerConnection connection, string reason)
    {
        PgLog.ServerClosed(_log, connection.Id, reason);
        _live.TryRemove(connection.Id, out _);
        _ = connection.CloseAsync().AsTask();
    }

    public void Return(PgServerConnection connection) => Connections.Return(connection);

    public void Discard(PgServerConnection connection, string reason) => Connections.Discard(connection, reason);

    /// <summary>Rolls back what a departed client left open and, in session mode, resets the session; then returns the connection.</summary>
    public async Task CleanAndReturnAsync(PgServerConnection connection, bool rollback)
    {
        try
        {
            using var timeout = new CancellationTokenSource(_database.Pool.ConnectTimeout, _time);
            if (rollback && await connection.RunInternalAsync("ROLLBACK", timeout.Token) is { } rollbackError)
                throw new InvalidOperationException(rollbackError);
            if (Mode == PoolMode.Session)
            {
                if (await connection.RunInternalAsync(_database.Pool.ResetQuery, timeout.Token) is { } resetError)
                    throw new InvalidOperationException(resetError);
                connection.ForgetUnreportedParameters();
            }
            if (connection.TransactionStatus != PgTransactionStatus.Idle)
                throw new InvalidOperationException("still in a transaction after the reset");
            Return(connection);
        }
        catch (Exception e)
        {
            Discard(connection, "could not be cleaned after its client left: " + e.Message);
        }
    }

    /// <summary>Asks the server to cancel what <paramref name="connection"/> is running (a CancelRequest on a new connection).</summary>
    public async Task CancelAsync(PgServerConnection connection)
    {
        try
        {
            using var timeout = new CancellationTokenSource(_database.Pool.ConnectTimeout, _time);
            await using var transport = await _connector.ConnectAsync(connection.Endpoint, timeout.Token);
            PgMessageWriter.WriteCancelRequest(transport.Transport.Output, connection.ProcessId, connection.SecretKey);
            await transport.Transport.Output.FlushAsync(timeout.Token);
            // The server closes the connection once it has read the request.
            while (true)
            {
                var result = await transport.Transport.Input.ReadAsync(timeout.Token);
                transport.Transport.Input.AdvanceTo(result.Buffer.End);
                if (result.IsCompleted)
                    break;
            }
        }
        catch (Exception e)
        {
            PgLog.ServerConnectionFailed(_log, connection.Id, connection.Endpoint.ToString(), "cancel request failed: " + e.Message);
        }
    }
}
