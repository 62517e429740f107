using System.Buffers;
using System.IO.Pipelines;
using Microsoft.AspNetCore.Connections;
using MProxy.Edge.Configuration;
using MProxy.Edge.Pooling;
using MProxy.Edge.Sessions;

namespace MProxy.Edge.Protocols.Postgres;

/// <summary>The states of a client session; <see cref="PgClientSession"/> changes them in one place each.</summary>
internal enum PgClientState
{
    Startup,
    Ready,
    Closing,
    Closed,
}

/// <summary>
/// One client connection speaking PostgreSQL v3 to the edge: login, then a loop that frames the
/// client's messages and forwards them to a server connection leased from its pool (per
/// transaction in transaction mode, for the whole session in session mode).
/// </summary>
internal sealed class PgClientSession : IClientSession
{
    private readonly PgEdgeContext _edge;
    private readonly ConnectionContext _connection;
    private readonly PipeReader _input;
    private readonly PipeWriter _output;
    private PgPool? _pool;
    private PgServerConnection? _server;    // the last server attached; it may have gone back to the pool since
    private PgServerConnection? _writing;   // the server this batch is writing to
    private bool _outputDirty;              // the edge wrote to the client directly in this batch
    private volatile bool _outputBroken;
    private bool _skipUntilSync;            // a request failed before reaching a server: skip to the client's Sync
    private long _copyRemaining;            // bytes of a large CopyData message still to pass on
    private bool _copyForward;
    private volatile bool _shutdownRequested;
    private volatile bool _closeRequested;     // close gracefully at the next read (after a FATAL was sent)
    private int _maxMessageBytes;
    private PgClientState _state = PgClientState.Startup;

    public PgClientSession(PgEdgeContext edge, ConnectionContext connection)
    {
        _edge = edge;
        _connection = connection;
        _input = connection.Transport.Input;
        _output = connection.Transport.Output;
        (ProcessId, SecretKey) = edge.Clients.NewKey();
    }

    public int ProcessId { get; }

    public int SecretKey { get; }

    public string User { get; private set; } = "";

    public string Database { get; private set; } = "";

    public PgClientState State => _state;

    /// <summary>The client's values of the tracked parameters (null: the server default).</summary>
    public string?[] Tracked { get; } = new string?[PgTrackedParameters.Count];

    /// <summary>The client's output, or null once writing to it has failed.</summary>
    public PipeWriter? WritableOutput => _outputBroken ? null : _output;

    public PgServerConnection? Server => _server;

    public async Task RunAsync()
    {
        var remote = _connection.RemoteEndPoint?.ToString();
        var registered = false;
        try
        {
            var config = _edge.Config.Current;
            _maxMessageBytes = config.Clients.MaxMessageBytes;
            PgStartupRequest? startup;
            using (var loginTimeout = new CancellationTokenSource(config.Clients.LoginTimeout, _edge.Time))
            {
                var first = await PgClientLogin.ReadFirstMessageAsync(_input, _output, loginTimeout.Token);
                if (first is PgCancelRequest cancel)
                {
                    await ForwardCancelAsync(cancel);
                    return;
                }
                startup = first as PgStartupRequest;
                if (startup is null)
                    return;
                if (!_edge.Clients.TryRegister(this, config.Clients.MaxConnections))
                {
                    var reason = _edge.Clients.ShuttingDown
                        ? "mproxy: the proxy is shutting down"
                        : $"mproxy: too many client connections (the limit is clients.maxConnections = {config.Clients.MaxConnections})";
                    PgLog.ClientRefused(_edge.Log, remote, reason);
                    throw new PgErrorException(_edge.Clients.ShuttingDown ? PgSqlState.CannotConnectNow : PgSqlState.TooManyConnections, reason, fatal: true);
                }
                registered = true;
                await LoginAsync(config, startup, remote, loginTimeout.Token);
            }
            _state = PgClientState.Ready;
            await QueryLoopAsync();
        }
        catch (PgProtocolException e)
        {
            PgLog.ClientProtocolViolation(_edge.Log, ProcessId, e.Message);
            await TryWriteFatalAsync(PgSqlState.ProtocolViolation, "mproxy: invalid message from client: " + e.Message);
        }
        catch (PgErrorException e)
        {
            await TryWriteFatalAsync(e.SqlState, e.Message, e.Detail, e.Hint);
        }
        catch (OperationCanceledException) when (_state == PgClientState.Startup)
        {
            await TryWriteFatalAsync(PgSqlState.ProtocolViolation, "mproxy: the client did not complete its login in time");
        }
        catch (Exception e) when (e is IOException or ConnectionResetException or ConnectionAbortedException or InvalidOperationException or EndOfStreamException)
        {
            // The client went away.
        }
        finally
        {
            _state = PgClientState.Closed;
            _server?.DetachClient(this);
            if (registered)
                _edge.Clients.Unregister(this);
            PgLog.ClientDisconnected(_edge.Log, ProcessId);
        }
    }

    // ------------------------------------------------------------------ login

    private async Task LoginAsync(EdgeConfig config, PgStartupRequest startup, string? remote, CancellationToken cancellationToken)
    {
        var parameters = startup.Parameters;
        if (!parameters.TryGetValue("user", out var user) || user.Length == 0)
            throw new PgErrorException(PgSqlState.InvalidAuthorizationSpecification, "mproxy: no PostgreSQL user name specified in startup packet", fatal: true);
        User = user;
        Database = parameters.TryGetValue("database", out var database) && database.Length > 0 ? database : user;

        var userConfig = config.FindUser(user);
        try
        {
            await PgClientLogin.AuthenticateAsync(_input, _output, config.Auth.Method, user, userConfig, cancellationToken);
        }
        catch (PgErrorException e)
        {
            PgLog.ClientLoginFailed(_edge.Log, ProcessId, remote, user, Database, e.Message);
            throw;
        }

        var databaseConfig = config.FindDatabase(Database)
            ?? throw new PgErrorException(PgSqlState.InvalidCatalogName, $"mproxy: database \"{Database}\" does not exist", fatal: true);
        SetStartupParameters(parameters);

        _pool = _edge.Pools.GetOrCreate(config, databaseConfig, userConfig, user);
        var welcome = _pool.Welcome;
        if (welcome is null)
        {
            // No server connection has been opened yet: open one to learn the server's parameters.
            var server = await AcquireAsync(cancellationToken);
            _pool.Return(server);
            welcome = _pool.Welcome!;
        }

        PgMessageWriter.WriteAuthentication(_output, PgAuthRequest.Ok);
        foreach (var (name, value) in welcome)
        {
            var index = PgTrackedParameters.IndexOf(name);
            if (index >= 0)
            {
                Tracked[index] ??= value;
                PgMessageWriter.WriteParameterStatus(_output, name, Tracked[index]!);
            }
            else
            {
                PgMessageWriter.WriteParameterStatus(_output, name, value);
            }
        }
        PgMessageWriter.WriteBackendKeyData(_output, ProcessId, SecretKey);
        PgMessageWriter.WriteReadyForQuery(_output, PgTransactionStatus.Idle);
        await _output.FlushAsync(cancellationToken);
        PgLog.ClientLoggedIn(_edge.Log, ProcessId, remote, user, Database);
    }

    private void SetStartupParameters(IReadOnlyDictionary<string, string> parameters)
    {
        foreach (var (name, value) in parameters)
        {
            switch (name)
            {
                case "user":
                case "database":
                    continue;
                case "fallback_application_name":
                    if (!parameters.ContainsKey("application_name"))
                        Tracked[PgTrackedParameters.IndexOf("application_name")] = value;
                    continue;
                case "replication":
                    throw new PgErrorException(PgSqlState.FeatureNotSupported, "mproxy: replication connections are not supported through the proxy", fatal: true);
                case "options":
                    List<KeyValuePair<string, string>> options;
                    try
                    {
                        options = PgTrackedParameters.ParseOptions(value);
                    }
                    catch (FormatException e)
                    {
                        throw new PgErrorException(PgSqlState.FeatureNotSupported, "mproxy: " + e.Message, fatal: true);
                    }
                    foreach (var (option, optionValue) in options)
                        SetStartupParameter(option, optionValue);
                    continue;
                default:
                    SetStartupParameter(name, value);
                    continue;
            }
        }
    }

    private void SetStartupParameter(string name, string value)
    {
        var index = PgTrackedParameters.IndexOf(name);
        if (index < 0)
        {
            throw new PgErrorException(PgSqlState.FeatureNotSupported, $"mproxy: unsupported startup parameter: {name}", fatal: true,
                hint: "mproxy keeps these parameters consistent across pooled connections: " + string.Join(", ", PgTrackedParameters.Names) + ". Set others with SET inside a transaction.");
        }
        Tracked[index] = value;
    }

    // ------------------------------------------------------------------ query loop

    private async Task QueryLoopAsync()
    {
        while (true)
        {
            var result = await _input.ReadAsync();
            var buffer = result.Buffer;
            try
            {
                if (result.IsCanceled && _closeRequested)
                    return;
                if (result.IsCanceled && _shutdownRequested && IsBetweenTransactions())
                {
                    await TryWriteFatalAsync(PgSqlState.AdminShutdown, "mproxy: the proxy is shutting down");
                    return;
                }
                var keepGoing = await ProcessBatchAsync(buffer);
                buffer = buffer.Slice(_consumed);
                await EndBatchAsync();
                if (!keepGoing)
                    return;
            }
            finally
            {
                _input.AdvanceTo(buffer.Start, buffer.End);
            }
            if (result.IsCompleted)
                return;
        }
    }

    private SequencePosition _consumed;

    /// <summary>Handles every whole message in the buffer; returns false when the client terminated.</summary>
    private async ValueTask<bool> ProcessBatchAsync(ReadOnlySequence<byte> buffer)
    {
        _consumed = buffer.Start;
        if (_copyRemaining > 0)
        {
            var take = Math.Min(_copyRemaining, buffer.Length);
            if (_copyForward && _writing is not null)
                Copy(_writing.Output, buffer.Slice(0, take));
            _copyRemaining -= take;
            buffer = buffer.Slice(take);
            _consumed = buffer.Start;
            if (_copyRemaining > 0)
                return true;
        }
        while (PgFrame.TryReadHeader(buffer, _maxMessageBytes, out var code, out var payloadLength))
        {
            var total = PgFrame.HeaderLength + (long)payloadLength;
            if (buffer.Length < total)
            {
                if (code == (byte)PgFrontendCode.CopyData)
                {
                    // Stream a large CopyData message instead of buffering it whole.
                    _copyForward = !_skipUntilSync && await TryHoldAttachedServerAsync();
                    if (_copyForward)
                        Copy(_writing!.Output, buffer);
                    _copyRemaining = total - buffer.Length;
                    _consumed = buffer.End;
                }
                return true;
            }
            var message = buffer.Slice(0, total);
            if (!await HandleMessageAsync(code, message))
                return false;
            buffer = buffer.Slice(total);
            _consumed = buffer.Start;
        }
        return true;
    }

    private async ValueTask<bool> HandleMessageAsync(byte code, ReadOnlySequence<byte> message)
    {
        if (_skipUntilSync)
        {
            // A request of this extended-protocol batch already failed: like the server, skip to Sync.
            if (code == (byte)PgFrontendCode.Sync)
            {
                _skipUntilSync = false;
                WriteDirect(static o => PgMessageWriter.WriteReadyForQuery(o, PgTransactionStatus.Idle));
            }
            return code != (byte)PgFrontendCode.Terminate;
        }
        switch ((PgFrontendCode)code)
        {
            case PgFrontendCode.Query:
                await ForwardRequestAsync(PgRequestKind.Query, message);
                return true;
            case PgFrontendCode.Parse:
                await ForwardRequestAsync(PgRequestKind.Parse, message);
                return true;
            case PgFrontendCode.Bind:
                await ForwardRequestAsync(PgRequestKind.Bind, message);
                return true;
            case PgFrontendCode.Execute:
                await ForwardRequestAsync(PgRequestKind.Execute, message);
                return true;
            case PgFrontendCode.Describe:
                await ForwardRequestAsync(DescribeKind(message), message);
                return true;
            case PgFrontendCode.Close:
                await ForwardRequestAsync(PgRequestKind.Close, message);
                return true;
            case PgFrontendCode.FunctionCall:
                await ForwardRequestAsync(PgRequestKind.FunctionCall, message);
                return true;
            case PgFrontendCode.Sync:
                if (await TryHoldAttachedServerAsync())
                {
                    _writing!.Enqueue(PgRequestKind.Sync, PgResponseMode.Forward);
                    Copy(_writing.Output, message);
                }
                else
                {
                    WriteDirect(static o => PgMessageWriter.WriteReadyForQuery(o, PgTransactionStatus.Idle));
                }
                return true;
            case PgFrontendCode.Flush:
            case PgFrontendCode.CopyData:
            case PgFrontendCode.CopyDone:
            case PgFrontendCode.CopyFail:
                // No response of their own; meaningful only on the attached server.
                if (await TryHoldAttachedServerAsync())
                    Copy(_writing!.Output, message);
                return true;
            case PgFrontendCode.Terminate:
                return false;
            default:
                PgProtocolException.Throw($"unknown message type '{(char)code}' (0x{code:X2})");
                return false;
        }
    }

    private static PgRequestKind DescribeKind(in ReadOnlySequence<byte> message)
    {
        if (message.Length < PgFrame.HeaderLength + 2)
            PgProtocolException.Throw("Describe message too short");
        var target = message.Slice(PgFrame.HeaderLength, 1).FirstSpan[0];
        return target switch
        {
            (byte)'S' => PgRequestKind.DescribeStatement,
            (byte)'P' => PgRequestKind.DescribePortal,
            _ => throw new PgProtocolException($"Describe of unknown target '{(char)target}'"),
        };
    }

    /// <summary>Sends one request to the client's server connection, leasing one first if it has none.</summary>
    private async ValueTask ForwardRequestAsync(PgRequestKind kind, ReadOnlySequence<byte> message)
    {
        if (_writing is null && !await TryHoldAttachedServerAsync())
        {
            try
            {
                await AttachNewServerAsync();
            }
            catch (Exception e) when (e is PgErrorException or PoolTimeoutException)
            {
                var (sqlState, text, fatal) = e switch
                {
                    PoolTimeoutException timeout => (PgSqlState.TooManyConnections, timeout.Message, false),
                    PgErrorException error => (error.SqlState, error.Message, error.Fatal),
                    _ => (PgSqlState.InternalError, e.Message, false),
                };
                if (fatal)
                    throw;
                WriteDirect(o => PgMessageWriter.WriteError(o, "ERROR", sqlState, text));
                if (kind is PgRequestKind.Query or PgRequestKind.FunctionCall)
                    WriteDirect(static o => PgMessageWriter.WriteReadyForQuery(o, PgTransactionStatus.Idle));
                else
                    _skipUntilSync = true;
                return;
            }
        }
        _writing!.Enqueue(kind, PgResponseMode.Forward);
        Copy(_writing.Output, message);
    }

    /// <summary>Starts writing to the attached server, if the client still has one; false otherwise.</summary>
    private ValueTask<bool> TryHoldAttachedServerAsync()
    {
        if (_writing is not null)
            return new ValueTask<bool>(true);
        var server = _server;
        if (server is not null && server.TryBeginWrite(this))
        {
            _writing = server;
            return new ValueTask<bool>(true);
        }
        return new ValueTask<bool>(false);
    }

    /// <summary>Leases a server connection from the pool, attaches it and aligns its session parameters.</summary>
    private async ValueTask AttachNewServerAsync()
    {
        // Output written directly to the client must reach it before a server's responses do.
        if (_outputDirty)
            await FlushDirectAsync();
        var server = await AcquireAsync(CancellationToken.None);
        server.Attach(this);
        _server = server;
        _writing = server;
        var sync = PgTrackedParameters.BuildSync(Tracked, server.Tracked);
        if (sync is not null)
        {
            server.Enqueue(PgRequestKind.Query, PgResponseMode.SwallowParameterSync);
            PgMessageWriter.WriteQuery(server.Output, sync);
            // Parameters the server does not report are now the client's; reported ones come back as ParameterStatus.
            for (var i = 0; i < Tracked.Length; i++)
                if (!PgTrackedParameters.IsReported(i))
                    server.Tracked[i] = Tracked[i];
        }
    }

    private async ValueTask<PgServerConnection> AcquireAsync(CancellationToken cancellationToken)
    {
        try
        {
            return await _pool!.Connections.AcquireAsync(cancellationToken);
        }
        catch (PoolClosedException e)
        {
            throw new PgErrorException(PgSqlState.AdminShutdown, e.Message, fatal: true);
        }
    }

    /// <summary>Ends a batch: flushes what went to the server and what the edge wrote to the client.</summary>
    private async ValueTask EndBatchAsync()
    {
        if (_outputDirty)
            await FlushDirectAsync();
        var server = _writing;
        if (server is null)
            return;
        _writing = null;
        try
        {
            await server.Output.FlushAsync();
        }
        finally
        {
            server.EndWrite(this);
        }
    }

    private void WriteDirect(Action<PipeWriter> write)
    {
        write(_output);
        _outputDirty = true;
    }

    private async ValueTask FlushDirectAsync()
    {
        _outputDirty = false;
        await _output.FlushAsync();
    }

    private static void Copy(PipeWriter output, in ReadOnlySequence<byte> bytes)
    {
        foreach (var segment in bytes)
            output.Write(segment.Span);
    }

    // ------------------------------------------------------------------ called by the server connection

    /// <summary>Flushes what the server connection's pump wrote; marks the output broken on failure.</summary>
    public async ValueTask FlushOutputAsync()
    {
        if (_outputBroken)
            return;
        try
        {
            var result = await _output.FlushAsync();
            if (result.IsCompleted)
                _outputBroken = true;
        }
        catch
        {
            _outputBroken = true;
        }
    }

    /// <summary>
    /// The attached server connection failed: tell the client (unless a message to it was cut in
    /// half, which leaves nothing sensible to say) and close the client's connection gracefully, so
    /// that the error is read before the close.
    /// </summary>
    public async Task FailFromServerAsync(bool midMessage, string message)
    {
        if (midMessage || _outputBroken)
        {
            Abort(message);
            return;
        }
        try
        {
            PgMessageWriter.WriteError(_output, "FATAL", PgSqlState.ConnectionFailure, message);
            await _output.FlushAsync();
        }
        catch
        {
            // the client is gone too
        }
        _closeRequested = true;
        _input.CancelPendingRead();
    }

    // ------------------------------------------------------------------ registry

    public void RequestShutdown()
    {
        _shutdownRequested = true;
        if (_state == PgClientState.Ready && IsBetweenTransactions())
            _input.CancelPendingRead();
    }

    private bool IsBetweenTransactions()
    {
        var server = _server;
        return server is null
            || !server.IsAttachedTo(this)
            || (_pool!.Mode == PoolMode.Session && server.TransactionStatus == PgTransactionStatus.Idle);
    }

    public void Abort(string reason)
    {
        _state = PgClientState.Closing;
        _connection.Abort(new ConnectionAbortedException(reason));
    }

    // ------------------------------------------------------------------ cancel

    private async Task ForwardCancelAsync(PgCancelRequest cancel)
    {
        var session = _edge.Clients.FindForCancel(cancel.ProcessId, cancel.SecretKey) as PgClientSession;
        var server = session?.Server;
        if (session is null || server is null || !server.IsAttachedTo(session))
        {
            PgLog.CancelIgnored(_edge.Log, cancel.ProcessId);
            return;
        }
        PgLog.CancelForwarded(_edge.Log, cancel.ProcessId, server.Id);
        await session._pool!.CancelAsync(server);
    }

    private async Task TryWriteFatalAsync(string sqlState, string message, string? detail = null, string? hint = null)
    {
        if (_outputBroken)
            return;
        try
        {
            PgMessageWriter.WriteError(_output, "FATAL", sqlState, message, detail, hint);
            await _output.FlushAsync();
        }
        catch
        {
            // the client is gone
        }
    }
}
