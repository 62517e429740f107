using System.Buffers;
using System.IO.Pipelines;
using System.Runtime.CompilerServices;
using System.Security.Authentication;
using System.Text;
using Microsoft.AspNetCore.Connections;
using MProxy.Abstractions.ResourceUnits;
using MProxy.Edge.Backends;
using MProxy.Edge.Configuration;
using MProxy.Edge.Networking;
using MProxy.Edge.Pooling;
using MProxy.Edge.Qos;
using MProxy.Edge.Routing;
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
internal sealed class PgClientSession : RelayClientSession, IClientSession, IRunawayTarget, MProxy.Edge.Admin.IDescribedClient
{
    private readonly PgEdgeContext _edge;
    private readonly ConnectionContext _connection;
    private PgPool? _pool;
    private PgServerConnection? _server;    // the last server attached; it may have gone back to the pool since
    private PgServerConnection? _writing;   // the server this batch is writing to
    private bool _skipUntilSync;            // a request failed before reaching a server: skip to the client's Sync
    private long _copyRemaining;            // bytes of a large CopyData message still to pass on
    private bool _copyForward;
    private int _maxMessageBytes;
    private PgClientState _state = PgClientState.Startup;
    private bool _unitOpen;                  // its first message is sent, its Sync or Query is not
    private long _bytesToServer;
    private PgClientStatements _statements = new(1);   // the client's named statements (sized at login)
    private StatementInfo _unitInfo;                   // classification of the current unit's first message
    private EdgeConfig? _config;
    private DatabaseConfig? _databaseConfig;
    private UserConfig? _userConfig;
    private SessionEffects _sessionEffects;            // state this client left on its sessions: keeps it on the primary
    private CausalToken _token;                        // read-your-writes: the latest write this client must see
    private volatile bool _tokenPending;               // a token is being fetched: route reads to the primary meanwhile
    private bool _captureTokenAfterUnit;
    private bool _unitClassified;
    private MProxy.Abstractions.Priority _unitPriority;
    private bool _admin;                                        // logged in to the admin console
    private readonly DateTimeOffset _connectedAt;
    private TlsTransport? _tls;                          // set once the client started TLS
    private byte[]? _deferredBegin;                      // the client's BEGIN message, answered by the edge, sent with the transaction's first statement
    private int _deferredBeginLength;                    // its length; 0: no BEGIN is deferred
    private bool _deferredFailed;                        // a statement of the deferred transaction was refused: the client's transaction is failed

    public PgClientSession(PgEdgeContext edge, ConnectionContext connection)
        : base(connection.Transport, Networking.Epoll.EpollTransport.LoopOf(connection))
    {
        _edge = edge;
        _connection = connection;
        (ProcessId, SecretKey) = edge.Clients.NewKey();
        _connectedAt = edge.Time.GetUtcNow();
    }

    public int ProcessId { get; }

    public int SecretKey { get; }

    public string User { get; private set; } = "";

    public string Database { get; private set; } = "";

    public PgClientState State => _state;

    /// <summary>The client's values of the tracked parameters (null: the server default).</summary>
    public string?[] Tracked { get; } = new string?[PgTrackedParameters.Count];

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
                var first = await ReadFirstMessageAsync(config, remote, loginTimeout.Token);
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
            if (_admin)
                await new PgAdminSession(_edge.Admin!, _input, _output, new(ProcessId, User), _maxMessageBytes, () => _shutdownRequested).RunAsync();
            else
                await CommandLoopAsync();
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
            EndBalanced();
            _qos?.Dispose();
            _telemetry?.Dispose();
            if (registered)
                _edge.Clients.Unregister(this);
            if (_tls is not null)
                await _tls.DisposeAsync();
            else
                CompleteTransport();
            PgLog.ClientDisconnected(_edge.Log, ProcessId);
        }
    }

    // ------------------------------------------------------------------ login

    /// <summary>
    /// Reads the client's first message, answering SSLRequests on the way: with <c>S</c> and a TLS
    /// handshake when the edge has a certificate (once per connection), else <c>N</c>. With
    /// <c>tls.mode: require</c> a cleartext startup is refused before authentication. Null: the
    /// client went away (or failed its handshake).
    /// </summary>
    private async Task<PgFirstMessage?> ReadFirstMessageAsync(EdgeConfig config, string? remote, CancellationToken cancellationToken)
    {
        while (true)
        {
            var first = await PgClientLogin.ReadFirstMessageAsync(_input, _output, cancellationToken);
            if (first is not PgSslRequest request)
            {
                if (first is PgStartupRequest && _tls is null && config.Tls is { Mode: TlsMode.Require })
                {
                    PgLog.ClientRefused(_edge.Log, remote, "a cleartext login where tls.mode is require");
                    throw new PgErrorException(PgSqlState.InvalidAuthorizationSpecification,
                        "mproxy: this edge accepts only TLS connections (tls.mode is require): connect with sslmode=require", fatal: true);
                }
                return first;
            }
            if (_tls is not null)
                PgProtocolException.Throw("SSLRequest on a connection that already uses TLS");
            if (config.Tls is not { } tls)
            {
                _output.Write("N"u8);
                await _output.FlushAsync(cancellationToken);
                continue;
            }
            // Bytes behind the SSLRequest were sent in cleartext before the handshake: never read
            // them as if they had come through TLS (the "buffer stuffing" attack, CVE-2021-23214).
            if (request.TrailingData)
                PgProtocolException.Throw("unencrypted data after SSLRequest");
            _output.Write("S"u8);
            await _output.FlushAsync(cancellationToken);
            try
            {
                _tls = await TlsTransport.AcceptAsync(_connection.Transport, tls, cancellationToken);
            }
            catch (AuthenticationException e)
            {
                PgLog.ClientTlsFailed(_edge.Log, remote, e.InnerException?.Message ?? e.Message);
                return null;
            }
            _input = _tls.Input;
            _output = _tls.Output;
        }
    }

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

        if (Database == MProxy.Edge.Admin.AdminConsole.DatabaseName)
        {
            if (userConfig is not { Admin: true } || _edge.Admin is null)
            {
                MProxy.Edge.Admin.AdminLog.Refused(_edge.Log, user, remote);
                throw new PgErrorException(PgSqlState.InsufficientPrivilege,
                    $"mproxy: user \"{user}\" may not use the admin console (database \"mproxy\" is for users with admin: true)", fatal: true);
            }
            _admin = true;
            parameters.TryGetValue("application_name", out var adminApplication);
            PgAdminSession.WriteWelcome(_output, ProcessId, SecretKey, adminApplication);
            await _output.FlushAsync(cancellationToken);
            MProxy.Edge.Admin.AdminLog.Connected(_edge.Log, ProcessId, user, remote);
            return;
        }
        var databaseConfig = config.FindDatabase(Database) is { Protocol: DatabaseProtocol.Postgres } found
            ? found
            : throw new PgErrorException(PgSqlState.InvalidCatalogName, $"mproxy: database \"{Database}\" does not exist", fatal: true);
        SetStartupParameters(parameters);

        _config = config;
        _databaseConfig = databaseConfig;
        _userConfig = userConfig;
        _pool = _edge.Pools.GetOrCreate(config, databaseConfig, userConfig, user);
        if (_pool.Backends?.Topology.Primary is { } primary)
            _pool = PoolOf(primary);
        _statements = new PgClientStatements(config.Clients.MaxPreparedStatements);
        if (_edge.Qos is { Config.Enabled: true } gate)
        {
            var applicationName = Tracked[PgTrackedParameters.ApplicationName];
            _qos = gate.OpenSession(gate.ResolveTenant(new TenantIdentity(user, Database, applicationName)), this);
        }
        _telemetry = _edge.Telemetry?.OpenSession(PgPoolRegistry.Protocol, Database, _qos?.Tenant.Name ?? user);
        var welcome = _pool.Welcome;
        if (welcome is null)
        {
            // No server connection has been opened yet: open one to learn the server's parameters.
            var server = await AcquireAsync(_pool, cancellationToken);
            _pool.Return(server);
            welcome = _pool.Welcome!;
        }

        PgMessageWriter.WriteAuthentication(_output, PgAuthRequest.Ok);
        foreach (var (name, value) in welcome)
        {
            var index = PgTrackedParameters.IndexOf(name);
            if (index >= 0)
            {
                Tracked[index] ??= PgTrackedParameters.Share(value);
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
                        Tracked[PgTrackedParameters.ApplicationName] = PgTrackedParameters.Share(value);
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
        Tracked[index] = PgTrackedParameters.Share(value);
    }

    // ------------------------------------------------------------------ query loop

    protected override Task WriteShutdownAsync() => TryWriteFatalAsync(PgSqlState.AdminShutdown, "mproxy: the proxy is shutting down");

    /// <summary>Handles every whole message in the buffer; returns false when the client terminated.</summary>
    [AsyncMethodBuilder(typeof(PooledValueTaskMethodBuilder<>))]
    protected override async ValueTask<bool> ProcessBatchAsync(ReadOnlySequence<byte> buffer)
    {
        _consumed = buffer.Start;
        if (_copyRemaining > 0)
        {
            var take = Math.Min(_copyRemaining, buffer.Length);
            // The server stays attached while a COPY is in progress; hold it again for this batch.
            if (_copyForward && TryHoldAttachedServer())
                CopyToServer(_writing!, buffer.Slice(0, take));
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
                    _copyForward = !_skipUntilSync && TryHoldAttachedServer();
                    if (_copyForward)
                        CopyToServer(_writing!, buffer);
                    _copyRemaining = total - buffer.Length;
                    _consumed = buffer.End;
                }
                return true;
            }
            var message = buffer.Slice(0, total);
            // Requests are the only messages whose handling may wait (for admission, a slot, a
            // server connection); awaited here so that a wait suspends one frame fewer.
            if (!_skipUntilSync && RequestKindOf(code, message) is { } kind)
                await RequestAsync(kind, message);
            else if (!HandleMessage(code, message))
                return false;
            buffer = buffer.Slice(total);
            _consumed = buffer.Start;
        }
        return true;
    }

    /// <summary>The request a message is (null: not one — Sync, Flush, COPY data, Terminate, or unknown).</summary>
    private static PgRequestKind? RequestKindOf(byte code, in ReadOnlySequence<byte> message) => (PgFrontendCode)code switch
    {
        PgFrontendCode.Query => PgRequestKind.Query,
        PgFrontendCode.Parse => PgRequestKind.Parse,
        PgFrontendCode.Bind => PgRequestKind.Bind,
        PgFrontendCode.Execute => PgRequestKind.Execute,
        PgFrontendCode.Describe => DescribeKind(message),
        PgFrontendCode.Close => PgRequestKind.Close,
        PgFrontendCode.FunctionCall => PgRequestKind.FunctionCall,
        _ => null,
    };

    /// <summary>Handles a message that is not a request (or any message while skipping to Sync); false when the client terminated.</summary>
    private bool HandleMessage(byte code, in ReadOnlySequence<byte> message)
    {
        if (_skipUntilSync)
        {
            // A request of this extended-protocol unit was refused: like the server, skip to Sync.
            if (code == (byte)PgFrontendCode.Sync)
            {
                _skipUntilSync = false;
                _unitOpen = false;
                if (TryHoldAttachedServer())
                    _writing!.EnqueueSynthetic([], readyForQuery: true, _unit);
                else
                    WriteReadyForQueryDirect();
            }
            return code != (byte)PgFrontendCode.Terminate;
        }
        switch ((PgFrontendCode)code)
        {
            case PgFrontendCode.Sync:
                if (TryHoldAttachedServer())
                {
                    _writing!.Enqueue(PgRequestKind.Sync, PgResponseMode.Forward, _unitOpen ? _unit : 0);
                    CopyToServer(_writing, message);
                    EndUnitOnServer();
                }
                else
                {
                    WriteReadyForQueryDirect();
                }
                _unitOpen = false;
                return true;
            case PgFrontendCode.Flush:
            case PgFrontendCode.CopyData:
            case PgFrontendCode.CopyDone:
            case PgFrontendCode.CopyFail:
                // No response of their own; meaningful only on the attached server.
                if (TryHoldAttachedServer())
                    CopyToServer(_writing!, message);
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

    /// <summary>
    /// Sends one request to the client's server connection. The first message of a request unit (a
    /// simple Query, or an extended-protocol run up to its Sync) is where the unit is admitted,
    /// scheduled and given a server connection.
    /// </summary>
    [AsyncMethodBuilder(typeof(PooledValueTaskMethodBuilder))]
    private async ValueTask RequestAsync(PgRequestKind kind, ReadOnlySequence<byte> message)
    {
        if (!_unitOpen && _pool!.VirtualizesStatements && kind is PgRequestKind.Parse or PgRequestKind.Close
            && !TryHoldAttachedServer() && TryAnswerWithoutServer(kind, message.Slice(PgFrame.HeaderLength)))
        {
            return;
        }
        if (!_unitOpen)
        {
            if (!await BeginUnitAsync(kind, message))
                return;
        }
        else if (_writing is null && !TryHoldAttachedServer())
        {
            // Cannot happen while a unit is open (its server stays attached until its Sync); be safe.
            PgProtocolException.Throw("request outside a unit without a server connection");
        }
        if (_pool!.VirtualizesStatements && await VirtualizeAsync(kind, message))
            return;
        var endsUnit = kind is PgRequestKind.Query or PgRequestKind.FunctionCall;
        _writing!.Enqueue(kind, PgResponseMode.Forward, endsUnit ? _unit : 0);
        CopyToServer(_writing, message);
        _unitOpen = !endsUnit;
        if (endsUnit)
            EndUnitOnServer();
    }

    /// <summary>The unit's last message is written: ask for a read-your-writes token behind it if the unit wrote.</summary>
    private void EndUnitOnServer()
    {
        if (!_captureTokenAfterUnit)
            return;
        _captureTokenAfterUnit = false;
        _tokenPending = true;
        _writing!.EnqueueCausalLsnQuery(this);
    }

    /// <summary>The WAL position the primary reported after this client's write (null: the query failed).</summary>
    public void OnCausalLsn(string? lsn)
    {
        if (lsn is not null && Lsn.TryParse(lsn, out var position))
            _token = _token.After(position, _edge.Time.GetTimestamp());
        _tokenPending = false;
    }

    /// <summary>
    /// Starts a request unit: classifies it, admits it (QoS: budget, runaway verdicts, hints),
    /// routes it (primary or replica) and gets a scheduler slot and a server connection there unless
    /// one is attached, and aligns the connection's settings. On a refusal it answers the client and
    /// returns false.
    /// </summary>
    [AsyncMethodBuilder(typeof(PooledValueTaskMethodBuilder<>))]
    private async ValueTask<bool> BeginUnitAsync(PgRequestKind kind, ReadOnlySequence<byte> message)
    {
        var attached = TryHoldAttachedServer();
        if (attached && _writing is { } held && await held.ReleaseBetweenUnitsAsync(this))
        {
            _writing = null; // its unit was over: this one is a new transaction, routed and admitted afresh
            attached = false;
        }
        if (!attached && kind == PgRequestKind.Query && _pool!.DefersBegin && TryAnswerTransactionControl(message))
            return false;
        // After a deferred BEGIN this unit starts the transaction on a server: it is admitted as a
        // transaction's start (never "inside one", which would let a BEGIN escape the budget).
        var deferred = _deferredBeginLength > 0;
        _unitClassified = false;
        var backends = _pool!.Backends;
        var info = _qos is not null || backends is not null ? UnitInfo(kind, message) : default;
        _sessionEffects |= info.Session & PinningEffects;

        QosAdmission admission = default;
        lock (_unitLock)
            _unit++;
        _telemetry?.Begin(_unit, info, classified: _qos is not null || backends is not null);
        if (_qos is not null)
        {
            try
            {
                admission = await _qos.AdmitAsync(info.Hints, info.Fingerprint, info.IsWrite ? RuKind.Write : RuKind.Read, inTransaction: attached, CancellationToken.None);
            }
            catch (ObjectDisposedException)
            {
                throw new PgErrorException(PgSqlState.AdminShutdown, "mproxy: the session is closing", fatal: true);
            }
            if (!admission.IsAdmitted)
            {
                Refuse(kind, admission.Rejection.SqlState, admission.Rejection.FormatMessage(), attached);
                return false;
            }
            _unitPriority = admission.Priority;
        }

        if (!attached)
        {
            // A deferred BEGIN decides where its transaction runs, as it would have had it been sent at once.
            var target = backends is null ? _pool : await RouteAsync(kind, backends, deferred ? DeferredBeginInfo() : info);
            if (target is null)
                return false;
            if (!await AttachWithinFailoverAsync(kind, target, backends))
                return false;
        }

        var server = _writing!;
        _telemetry?.Sent(server.IsPrimaryConnection, server.Endpoint);
        // Read-your-writes: after a unit that writes on the primary outside a transaction block (or
        // ends one), the edge learns a WAL position taken after it, so that this client's later
        // reads go only to replicas that have replayed it.
        _captureTokenAfterUnit = backends is { Config.ReadYourWrites: true, Config.ReplicaCount: > 0 }
            && server.IsPrimaryConnection
            && (info.Boundary == TransactionBoundary.Closes || (info.IsWrite && server.TransactionStatus == PgTransactionStatus.Idle && !deferred));
        if (_qos is not null)
        {
            SyncGroupSettings(server, admission);
            _qos.Start(_edge.Qos!.Config.WeightsFor(Database));
        }
        if (deferred)
            SendDeferredBegin(server);
        _unitOpen = true;
        return true;
    }

    /// <summary>
    /// Deferred BEGIN (<c>pool.deferBegin</c>, transaction mode). A plain BEGIN from a client outside
    /// a transaction is answered here (BEGIN, then ReadyForQuery <c>T</c>) and sent to the server just
    /// ahead of the transaction's first statement, in the same write: the transaction then holds its
    /// server connection one round trip less, and a client idle after BEGIN holds none. COMMIT or
    /// ROLLBACK before any statement reached a server is answered here as well. True when the edge
    /// answered <paramref name="message"/>.
    /// </summary>
    private bool TryAnswerTransactionControl(in ReadOnlySequence<byte> message)
    {
        var first = message.FirstSpan;
        if (message.Length > PgFrame.HeaderLength + PgTransactionText.MaxLength + 1
            || (first.Length > PgFrame.HeaderLength && !PgTransactionText.MayBeOne(first[PgFrame.HeaderLength..])))
            return false;
        Span<byte> text = stackalloc byte[PgTransactionText.MaxLength + 1];
        var length = (int)message.Length - PgFrame.HeaderLength;
        message.Slice(PgFrame.HeaderLength).CopyTo(text);
        if (length > 0 && text[length - 1] == 0)
            length--;
        var command = PgTransactionText.Classify(text[..length]);
        switch (command)
        {
            case PgTransactionCommand.Begin or PgTransactionCommand.StartTransaction when _deferredBeginLength == 0:
                _deferredBegin ??= new byte[PgFrame.HeaderLength + PgTransactionText.MaxLength + 1];
                message.CopyTo(_deferredBegin);
                _deferredBeginLength = (int)message.Length; // _deferredFailed is false: only a deferred transaction sets it
                _telemetry?.DeferredBegin();
                break;
            case PgTransactionCommand.Commit or PgTransactionCommand.Rollback when _deferredBeginLength > 0:
                _deferredBeginLength = 0;
                break;
            default:
                return false;
        }
        PgMessageWriter.WriteCommandComplete(_output, PgTransactionText.Tag(command, _deferredFailed));
        _deferredFailed = false;
        WriteReadyForQueryDirect();
        return true;
    }

    /// <summary>The classification of the deferred BEGIN (where its transaction is routed).</summary>
    private StatementInfo DeferredBeginInfo() =>
        StatementClassifier.Classify(_deferredBegin.AsSpan(PgFrame.HeaderLength, _deferredBeginLength - PgFrame.HeaderLength - 1), SqlDialect.PostgreSql, Rules);

    /// <summary>
    /// Writes the deferred BEGIN ahead of the unit's first message (after the edge's own settings, so
    /// that those stay outside the transaction). Its success is not relayed (the client had it); an
    /// error would be. When a statement of the transaction was refused before it reached a server,
    /// the transaction is made to fail there too, so the server answers the client's next statements
    /// as it answers them in a failed transaction (25P02, until ROLLBACK).
    /// </summary>
    private void SendDeferredBegin(PgServerConnection server)
    {
        server.Enqueue(PgRequestKind.Query, PgResponseMode.SwallowSuccess);
        CopyToServer(server, new ReadOnlySequence<byte>(_deferredBegin!, 0, _deferredBeginLength));
        if (_deferredFailed)
        {
            server.Enqueue(new PgPendingRequest(PgRequestKind.Query, PgResponseMode.Swallow, new PgInternalRequest()));
            PgMessageWriter.WriteQuery(server.Output, FailTransactionSql);
        }
        _deferredBeginLength = 0;
        _deferredFailed = false;
    }

    /// <summary>Fails the server's transaction on purpose (a refused statement failed the client's deferred one).</summary>
    private const string FailTransactionSql =
        "DO $mproxy$BEGIN RAISE EXCEPTION 'mproxy: a statement of this transaction was refused by the edge' USING ERRCODE = '25P02'; END$mproxy$";

    /// <summary>ReadyForQuery from the edge while no server is attached: idle, or in the deferred transaction (failed after a refusal).</summary>
    private void WriteReadyForQueryDirect()
    {
        var status = _deferredBeginLength == 0 ? PgTransactionStatus.Idle
            : _deferredFailed ? PgTransactionStatus.Failed
            : PgTransactionStatus.InTransaction;
        PgMessageWriter.WriteReadyForQuery(_output, status);
        _outputDirty = true;
    }

    /// <summary>Session effects that keep a client's transactions on the primary (state a replica would not have).</summary>
    private const SessionEffects PinningEffects = SessionEffects.SetParameter | SessionEffects.TemporaryObject | SessionEffects.HoldableCursor
        | SessionEffects.AdvisoryLock | SessionEffects.Listen | SessionEffects.Load;

    /// <summary>
    /// Where a unit that starts a transaction goes: the router's decision (writes and pinned
    /// sessions to the primary, reads by P2C over replicas that are healthy, within the lag bound
    /// and have replayed this client's writes). Null when the unit was refused.
    /// </summary>
    [AsyncMethodBuilder(typeof(PooledValueTaskMethodBuilder<>))]
    private async ValueTask<PgPool?> RouteAsync(PgRequestKind kind, DatabaseBackends backends, StatementInfo info)
    {
        var pinned = _sessionEffects != 0 || _tokenPending || _pool!.Mode == PoolMode.Session;
        var decision = backends.Route(info, pinned, _token);
        switch (decision.Target)
        {
            case RouteTarget.Primary:
            case RouteTarget.Replica:
                return PoolOf(decision.Backend!);
            case RouteTarget.WaitForPrimary:
                try
                {
                    return PoolOf(await backends.Monitor.WaitForPrimaryAsync(CancellationToken.None));
                }
                catch (BackendUnavailableException e)
                {
                    _qos?.Complete();
                    Refuse(kind, PgSqlState.CannotConnectNow, "mproxy: " + e.Message, attached: false);
                    return null;
                }
            default:
                _qos?.Complete();
                Refuse(kind, PgSqlState.CannotConnectNow,
                    $"mproxy: no replica of database \"{Database}\" can serve reads now (down or lagging) and backends.primaryServesReads is off; retry later", attached: false);
                return null;
        }
    }

    private PgPool PoolOf(BackendStatus backend) =>
        _edge.Pools.GetOrCreate(_config!, _databaseConfig!, _userConfig, User, backend.Endpoint, backend.Index);

    /// <summary>
    /// Gets a scheduler slot and a connection from <paramref name="pool"/>. When the primary cannot be
    /// reached, waits (bounded by backends.failoverWaitMs) for a usable primary — the old one back, or
    /// a promoted replica — instead of failing at once.
    /// </summary>
    [AsyncMethodBuilder(typeof(PooledValueTaskMethodBuilder<>))]
    private async ValueTask<bool> AttachWithinFailoverAsync(PgRequestKind kind, PgPool pool, DatabaseBackends? backends)
    {
        var started = _edge.Time.GetTimestamp();
        var delay = TimeSpan.FromMilliseconds(50);
        while (true)
        {
            if (_qos is not null)
            {
                var slot = await _qos.AcquireSlotAsync(pool.Scheduler!, pool.Database.Pool.WaitTimeout, CancellationToken.None);
                if (!slot.IsGranted)
                {
                    Refuse(kind, slot.Rejection.SqlState, slot.Rejection.FormatMessage(), attached: false);
                    return false;
                }
                _telemetry?.SlotGranted(pool.Scheduler!.Name, _unitPriority, slot.Waited);
            }
            try
            {
                // Leased here rather than in a helper: an async frame on the stack when the pool wait
                // suspends is one more boxed state machine per waited lease (see ServerPool.AcquireSlowAsync).
                // Output written directly to the client must reach it before a server's responses do.
                if (_outputDirty)
                    await FlushDirectAsync();
                PgServerConnection server;
                try
                {
                    server = await pool.Connections.AcquireAsync(Loop, CancellationToken.None);
                }
                catch (PoolClosedException closed)
                {
                    // A host's pool closes when its breaker opens or it stops being the primary: route
                    // again (below, within failoverWaitMs). Without backends it is the edge stopping.
                    throw pool.Backends is null
                        ? new PgErrorException(PgSqlState.AdminShutdown, closed.Message, fatal: true)
                        : new PgErrorException(PgSqlState.CannotConnectNow, closed.Message);
                }
                AttachServer(pool, server);
                return true;
            }
            catch (Exception e) when (e is PgErrorException { Fatal: false } or PoolTimeoutException)
            {
                _qos?.ReleaseSlot();
                var retry = e is PgErrorException { SqlState: PgSqlState.CannotConnectNow }
                    && backends is not null
                    && _edge.Time.GetElapsedTime(started) + delay < backends.Config.FailoverWait;
                if (!retry)
                {
                    _qos?.Complete();
                    var (sqlState, text) = e is PgErrorException error ? (error.SqlState, error.Message) : (PgSqlState.TooManyConnections, e.Message);
                    Refuse(kind, sqlState, text, attached: false);
                    return false;
                }
                await Task.Delay(delay, _edge.Time);
                delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, TimeSpan.FromSeconds(1).Ticks));
                var isReplica = pool.Backends is { } b && b.Topology.PrimaryIndex != pool.BackendIndex && pool.BackendIndex < b.Topology.Backends.Length
                    && b.Topology.Backends[pool.BackendIndex].Role != BackendRole.Primary;
                try
                {
                    pool = isReplica
                        ? PoolOf(backends!.Topology.Primary ?? await backends.Monitor.WaitForPrimaryAsync(CancellationToken.None))
                        : PoolOf(await backends!.Monitor.WaitForPrimaryAsync(CancellationToken.None));
                }
                catch (BackendUnavailableException unavailable)
                {
                    _qos?.Complete();
                    Refuse(kind, PgSqlState.CannotConnectNow, "mproxy: " + unavailable.Message, attached: false);
                    return false;
                }
            }
        }
    }

    /// <summary>
    /// Answers a refused unit: an ErrorResponse, then ReadyForQuery for a simple Query, or — for an
    /// extended-protocol unit — skipping the client's messages up to its Sync, like the server would.
    /// While a server is attached the answer goes through its queue, after what is still in flight.
    /// </summary>
    private void Refuse(PgRequestKind kind, string sqlState, string message, bool attached)
    {
        var simple = kind is PgRequestKind.Query or PgRequestKind.FunctionCall;
        _telemetry?.Refused(sqlState);
        if (attached && _writing is not null)
        {
            var error = new ArrayBufferWriter<byte>();
            PgMessageWriter.WriteError(error, "ERROR", sqlState, message);
            _writing.EnqueueSynthetic(error.WrittenSpan.ToArray(), readyForQuery: simple, _unit);
        }
        else
        {
            // Inside a deferred transaction the refusal fails it, as an error fails a transaction on a server.
            _deferredFailed = _deferredBeginLength > 0;
            WriteDirect(o => PgMessageWriter.WriteError(o, "ERROR", sqlState, message));
            if (simple)
                WriteReadyForQueryDirect();
        }
        if (!simple)
            _skipUntilSync = true;
        _unitOpen = !simple;
    }

    /// <summary>Starts writing to the attached server, if the client still has one; false otherwise.</summary>
    private bool TryHoldAttachedServer()
    {
        if (_writing is not null)
            return true;
        var server = _server;
        if (server is not null && server.TryBeginWrite(this))
        {
            _writing = server;
            return true;
        }
        return false;
    }

    /// <summary>Attaches a server connection just leased from <paramref name="pool"/> and aligns its session parameters.</summary>
    private void AttachServer(PgPool pool, PgServerConnection server)
    {
        StartBalanced(pool);
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

    /// <summary>
    /// Applies the admitted group's server settings and statement timeout to the connection when they
    /// differ from what it has — only between transactions, where a SET cannot disturb the client's
    /// portals — so that the common case costs nothing.
    /// </summary>
    private void SyncGroupSettings(PgServerConnection server, in QosAdmission admission)
    {
        if (server.TransactionStatus != PgTransactionStatus.Idle || server.HasPendingRequests)
            return;
        var changes = _settingChanges ??= [];
        if (!server.GroupSettings.Plan(admission, changes, out var timeout))
            return;
        var sql = new StringBuilder();
        foreach (var (name, value) in changes)
        {
            if (value is null)
                sql.Append("RESET ").Append(name).Append(';');
            else
                sql.Append("SET ").Append(name).Append(" TO ").Append(PgTrackedParameters.QuoteLiteral(value)).Append(';');
        }
        if (timeout is { } t)
            sql.Append(t > TimeSpan.Zero ? $"SET statement_timeout TO {(long)t.TotalMilliseconds};" : "RESET statement_timeout;");
        server.Enqueue(PgRequestKind.Query, PgResponseMode.Swallow);
        PgMessageWriter.WriteQuery(server.Output, sql.ToString());
    }

    private List<KeyValuePair<string, string?>>? _settingChanges;

    [AsyncMethodBuilder(typeof(PooledValueTaskMethodBuilder<>))]
    private async ValueTask<PgServerConnection> AcquireAsync(PgPool pool, CancellationToken cancellationToken)
    {
        try
        {
            return await pool.Connections.AcquireAsync(Loop, cancellationToken);
        }
        catch (PoolClosedException e)
        {
            throw new PgErrorException(PgSqlState.AdminShutdown, e.Message, fatal: true);
        }
    }

    /// <summary>Ends a batch: flushes what went to the server and what the edge wrote to the client.</summary>
    [AsyncMethodBuilder(typeof(PooledValueTaskMethodBuilder))]
    protected override async ValueTask EndBatchAsync()
    {
        if (_outputDirty)
            await FlushDirectAsync();
        var server = _writing;
        if (server is null)
            return;
        _writing = null;
        try
        {
            if (_bytesToServer > 0)
            {
                _qos?.AddBytes(0, _bytesToServer);
                _telemetry?.AddBytes(0, _bytesToServer);
                _bytesToServer = 0;
            }
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

    private void CopyToServer(PgServerConnection server, in ReadOnlySequence<byte> bytes)
    {
        server.Output.WriteSequence(bytes);
        _bytesToServer += bytes.Length;
    }

    // ------------------------------------------------------------------ statement classification

    private static readonly RoutingRules NonConformingRules = RoutingRules.Default with { StandardConformingStrings = false };

    private RoutingRules Rules => Tracked[PgTrackedParameters.StandardConformingStrings] == "off" ? NonConformingRules : RoutingRules.Default;

    /// <summary>The classification of the unit starting with this message (what admission and routing need).</summary>
    private StatementInfo UnitInfo(PgRequestKind kind, in ReadOnlySequence<byte> message)
    {
        var payload = message.Slice(PgFrame.HeaderLength);
        switch (kind)
        {
            case PgRequestKind.Query:
                return ClassifyText(payload);
            case PgRequestKind.Parse:
                return ClassifyText(payload.Slice(payload.GetPosition(1, payload.PositionOf((byte)0) ?? payload.Start)));
            case PgRequestKind.Bind:
                {
                    // Bind: portal name, statement name, …
                    var reader = new SequenceReader<byte>(payload);
                    if (reader.TryAdvanceTo(0) && reader.TryReadTo(out ReadOnlySequence<byte> name, 0) && name.Length > 0
                        && FindStatement(name) is { } statement)
                        return statement.Statement.Info;
                    return UnknownUnit;
                }
            default:
                return UnknownUnit;
        }
    }

    /// <summary>A unit the edge cannot classify (no SQL text in its first message): treated as a write.</summary>
    private static readonly StatementInfo UnknownUnit = new() { Access = StatementAccess.Write, Kind = StatementKind.Unknown };

    /// <summary>Classifies NUL-terminated SQL text (the rest of the payload after it is ignored); remembered for the unit.</summary>
    private StatementInfo ClassifyText(ReadOnlySequence<byte> text)
    {
        var end = text.PositionOf((byte)0);
        if (end is not null)
            text = text.Slice(0, end.Value);
        if (text.IsSingleSegment)
        {
            _unitInfo = StatementClassifier.Classify(text.FirstSpan, SqlDialect.PostgreSql, Rules);
        }
        else
        {
            var array = ArrayPool<byte>.Shared.Rent((int)text.Length);
            try
            {
                text.CopyTo(array);
                _unitInfo = StatementClassifier.Classify(array.AsSpan(0, (int)text.Length), SqlDialect.PostgreSql, Rules);
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(array);
            }
        }
        _unitClassified = true;
        return _unitInfo;
    }

    private PgClientStatement? FindStatement(in ReadOnlySequence<byte> name)
    {
        if (name.IsSingleSegment)
            return _statements.Find(name.FirstSpan);
        Span<byte> copy = name.Length <= 256 ? stackalloc byte[(int)name.Length] : new byte[name.Length];
        name.CopyTo(copy);
        return _statements.Find(copy);
    }

    /// <summary>The pump saw the Parse that registered this name fail (or be skipped): the name is void.</summary>
    public void ForgetStatement(PgClientStatement statement) => _statements.Remove(statement);

    // ------------------------------------------------------------------ prepared statements across pooled connections

    private static readonly byte[] ParseComplete = [(byte)PgBackendCode.ParseComplete, 0, 0, 0, 4];
    private static readonly byte[] CloseComplete = [(byte)PgBackendCode.CloseComplete, 0, 0, 0, 4];

    /// <summary>
    /// Transaction mode: maps the client's named statements onto the edge's server-side statements,
    /// preparing them on the current server connection when it lacks them. Returns true when the
    /// message was handled here (written rewritten, or answered by the edge).
    /// </summary>
    private ValueTask<bool> VirtualizeAsync(PgRequestKind kind, ReadOnlySequence<byte> message)
    {
        var payload = message.Slice(PgFrame.HeaderLength);
        return kind switch
        {
            PgRequestKind.Parse => new(VirtualizeParse(payload)),
            PgRequestKind.Bind => new(VirtualizeBind(payload)),
            PgRequestKind.DescribeStatement => new(VirtualizeDescribe(payload)),
            PgRequestKind.Close => new(VirtualizeClose(payload)),
            PgRequestKind.Query => new(VirtualizeSqlLevel(payload)),
            _ => new(false),
        };
    }

    /// <summary>
    /// Between transactions, a Parse of a statement some server already accepted, and a Close, need
    /// no server connection: the edge answers them (the statement is prepared where it is used).
    /// This also spares clients that prepare synchronously while holding another connection in a
    /// transaction (pgbench -M prepared) from waiting on a full pool.
    /// </summary>
    private bool TryAnswerWithoutServer(PgRequestKind kind, ReadOnlySequence<byte> payload)
    {
        if (kind == PgRequestKind.Close)
        {
            if (payload.FirstSpan[0] != (byte)'S')
                return false;
            var closed = payload.Slice(1);
            closed = closed.Slice(0, closed.PositionOf((byte)0) ?? throw new PgProtocolException("malformed Close message"));
            if (closed.Length > 0 && FindStatement(closed) is { } registered)
                _statements.Remove(registered);
            WriteDirect(static o => o.Write(CloseComplete));
            return true;
        }
        if (payload.FirstSpan.Length > 0 && payload.FirstSpan[0] == 0)
            return false; // the unnamed statement lives on a server connection
        var bytes = System.Buffers.BuffersExtensions.ToArray(payload);
        var nameEnd = Array.IndexOf(bytes, (byte)0);
        var queryEnd = nameEnd < 0 ? -1 : Array.IndexOf(bytes, (byte)0, nameEnd + 1);
        if (queryEnd < 0 || bytes.Length - queryEnd - 1 < 2)
            PgProtocolException.Throw("malformed Parse message");
        var statement = _pool!.Catalog.Find(PgStatementFlavor.Protocol, bytes.AsSpan(nameEnd + 1, queryEnd - nameEnd - 1), bytes.AsSpan(queryEnd + 1));
        if (statement is not { Validated: true })
            return false;
        var name = bytes.AsSpan(0, nameEnd);
        if (_statements.Find(name) is not null)
        {
            WriteDirect(o => PgMessageWriter.WriteError(o, "ERROR", "42P05", $"prepared statement \"{Encoding.UTF8.GetString(bytes, 0, nameEnd)}\" already exists"));
            _skipUntilSync = true;
            return true;
        }
        if (!_statements.TryAdd(new PgClientStatement(name.ToArray(), statement)))
        {
            WriteDirect(o => PgMessageWriter.WriteError(o, "ERROR", PgSqlState.ConfigurationLimitExceeded,
                $"mproxy: this client has {_statements.Capacity} prepared statements, the limit (clients.maxPreparedStatements); close some (Close or DEALLOCATE) before preparing more"));
            _skipUntilSync = true;
            return true;
        }
        WriteDirect(static o => o.Write(ParseComplete));
        return true;
    }

    private bool VirtualizeParse(ReadOnlySequence<byte> payload)
    {
        if (payload.FirstSpan.Length > 0 && payload.FirstSpan[0] == 0)
            return VirtualizeUnnamedParse(payload); // the unnamed statement lives on the server connection, as usual
        var bytes = System.Buffers.BuffersExtensions.ToArray(payload);
        var nameEnd = Array.IndexOf(bytes, (byte)0);
        var queryEnd = nameEnd < 0 ? -1 : Array.IndexOf(bytes, (byte)0, nameEnd + 1);
        if (queryEnd < 0 || bytes.Length - queryEnd - 1 < 2)
            PgProtocolException.Throw("malformed Parse message");
        var name = bytes.AsSpan(0, nameEnd);
        var query = bytes.AsSpan(nameEnd + 1, queryEnd - nameEnd - 1);
        if (_statements.Find(name) is not null)
        {
            RefuseStatement(PgRequestKind.Parse, "42P05", $"prepared statement \"{Encoding.UTF8.GetString(name)}\" already exists");
            return true;
        }
        var statement = _pool!.Catalog.Intern(PgStatementFlavor.Protocol, query, bytes.AsSpan(queryEnd + 1), text => StatementClassifier.Classify(text, SqlDialect.PostgreSql, Rules));
        var registered = new PgClientStatement(name.ToArray(), statement);
        if (!_statements.TryAdd(registered))
        {
            RefuseStatement(PgRequestKind.Parse, PgSqlState.ConfigurationLimitExceeded,
                $"mproxy: this client has {_statements.Capacity} prepared statements, the limit (clients.maxPreparedStatements); close some (Close or DEALLOCATE) before preparing more");
            return true;
        }
        if (_writing!.EnsurePrepared(statement, PgResponseMode.Forward, registered))
            _writing.EnqueueSynthetic(ParseComplete, readyForQuery: false, unit: 0);
        return true;
    }

    private bool VirtualizeBind(ReadOnlySequence<byte> payload)
    {
        // Bind: portal\0 statement\0 rest
        var reader = new SequenceReader<byte>(payload);
        if (!reader.TryReadTo(out ReadOnlySequence<byte> portal, 0) || !reader.TryReadTo(out ReadOnlySequence<byte> name, 0))
            throw new PgProtocolException("malformed Bind message");
        if (name.Length == 0)
            return false;
        if (FindStatement(name) is not { } registered)
        {
            RefuseStatement(PgRequestKind.Bind, "26000", $"prepared statement \"{Encoding.UTF8.GetString(name)}\" does not exist");
            return true;
        }
        var statement = registered.Statement;
        var server = _writing!;
        server.EnsurePrepared(statement, PgResponseMode.SwallowSuccess);
        server.Enqueue(new PgPendingRequest(PgRequestKind.Bind, PgResponseMode.Forward, Op: PgStatementOp.Use, Statement: statement));
        var rest = payload.Slice(reader.Position);
        var length = 4 + (int)portal.Length + 1 + statement.ServerNameBytes.Length + 1 + (int)rest.Length;
        var output = server.Output;
        var header = output.GetSpan(5);
        header[0] = (byte)PgFrontendCode.Bind;
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(header[1..], length);
        output.Advance(5);
        CopyToServer(server, portal);
        output.Write<byte>([0]);
        output.Write(statement.ServerNameBytes);
        output.Write<byte>([0]);
        CopyToServer(server, rest);
        return true;
    }

    private bool VirtualizeDescribe(ReadOnlySequence<byte> payload)
    {
        // Describe: 'S' name\0
        var name = payload.Slice(1);
        var end = name.PositionOf((byte)0) ?? throw new PgProtocolException("malformed Describe message");
        name = name.Slice(0, end);
        if (name.Length == 0)
            return false;
        if (FindStatement(name) is not { } registered)
        {
            RefuseStatement(PgRequestKind.DescribeStatement, "26000", $"prepared statement \"{Encoding.UTF8.GetString(name)}\" does not exist");
            return true;
        }
        var statement = registered.Statement;
        var server = _writing!;
        server.EnsurePrepared(statement, PgResponseMode.SwallowSuccess);
        server.Enqueue(new PgPendingRequest(PgRequestKind.DescribeStatement, PgResponseMode.Forward, Op: PgStatementOp.Use, Statement: statement));
        var output = server.Output;
        var span = output.GetSpan(7 + statement.ServerNameBytes.Length);
        span[0] = (byte)PgFrontendCode.Describe;
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(span[1..], 4 + 1 + statement.ServerNameBytes.Length + 1);
        span[5] = (byte)'S';
        statement.ServerNameBytes.CopyTo(span[6..]);
        span[6 + statement.ServerNameBytes.Length] = 0;
        output.Advance(7 + statement.ServerNameBytes.Length);
        return true;
    }

    private bool VirtualizeClose(ReadOnlySequence<byte> payload)
    {
        // Close: 'S' name\0 (portals are passed through)
        if (payload.FirstSpan[0] != (byte)'S')
            return false;
        var name = payload.Slice(1);
        name = name.Slice(0, name.PositionOf((byte)0) ?? throw new PgProtocolException("malformed Close message"));
        if (name.Length == 0)
            return false;
        // The server-side statement stays for other clients; only this client's name goes.
        if (FindStatement(name) is { } registered)
            _statements.Remove(registered);
        _writing!.EnqueueSynthetic(CloseComplete, readyForQuery: false, unit: 0);
        return true;
    }

    private const SessionEffects SqlStatementEffects = SessionEffects.Prepare | SessionEffects.Execute | SessionEffects.Deallocate | SessionEffects.Discard;

    /// <summary>SQL-level <c>PREPARE</c>/<c>EXECUTE</c>/<c>DEALLOCATE</c> (and <c>DISCARD ALL</c>) in a simple Query.</summary>
    private bool VirtualizeSqlLevel(ReadOnlySequence<byte> payload)
    {
        // Most queries name none of these commands: skip classifying them (QoS and routing, when on,
        // have classified the unit already).
        if (!_unitClassified && payload.IsSingleSegment && !StatementClassifier.MayHavePreparedStatementCommand(payload.FirstSpan))
            return false;
        var info = _unitClassified ? _unitInfo : ClassifyText(payload);
        if ((info.Session & SqlStatementEffects) == 0)
            return false;
        var text = System.Buffers.BuffersExtensions.ToArray(payload.Slice(0, payload.PositionOf((byte)0) ?? payload.End));
        if (RewriteSqlLevel(PgRequestKind.Query, text, info) is not { } rewritten)
            return true; // answered
        _writing!.Enqueue(rewritten.Request with { Unit = _unit });
        PgMessageWriter.WriteQuery(_writing.Output, Encoding.UTF8.GetString(rewritten.Text));
        _unitOpen = false;
        EndUnitOnServer();
        return true;
    }

    /// <summary>The same for the unnamed statement of an extended-protocol Parse (how Npgsql and JDBC send them).</summary>
    private bool VirtualizeUnnamedParse(ReadOnlySequence<byte> payload)
    {
        var query = payload.Slice(1);
        var queryEnd = query.PositionOf((byte)0) ?? throw new PgProtocolException("malformed Parse message");
        var info = ClassifyText(query);
        if ((info.Session & SqlStatementEffects) == 0)
            return false;
        var text = System.Buffers.BuffersExtensions.ToArray(query.Slice(0, queryEnd));
        if (RewriteSqlLevel(PgRequestKind.Parse, text, info) is not { } rewritten)
            return true;
        var parameterTypes = query.Slice(query.GetPosition(1, queryEnd));
        var server = _writing!;
        server.Enqueue(rewritten.Request);
        var length = 4 + 1 + rewritten.Text.Length + 1 + (int)parameterTypes.Length;
        var span = server.Output.GetSpan(6);
        span[0] = (byte)PgFrontendCode.Parse;
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(span[1..], length);
        span[5] = 0; // the unnamed statement
        server.Output.Advance(6);
        server.Output.Write(rewritten.Text);
        server.Output.Write<byte>([0]);
        CopyToServer(server, parameterTypes);
        return true;
    }

    private readonly record struct SqlRewrite(byte[] Text, PgPendingRequest Request);

    /// <summary>
    /// Rewrites one SQL-level prepared-statement command for the current server connection: the
    /// client's name becomes the edge's server-side name, after making sure the statement is (or,
    /// for PREPARE, is not) on the connection. Returns null when the edge answered the command
    /// itself (an error, or DEALLOCATE ALL).
    /// </summary>
    private SqlRewrite? RewriteSqlLevel(PgRequestKind kind, byte[] text, in StatementInfo info)
    {
        var server = _writing!;
        var extended = kind == PgRequestKind.Parse;
        var request = new PgPendingRequest(kind, PgResponseMode.Forward);
        if (info.StatementCount > 1 && (info.Session & (SessionEffects.Prepare | SessionEffects.Execute | SessionEffects.Deallocate)) != 0)
        {
            RefuseStatement(kind, PgSqlState.FeatureNotSupported,
                "mproxy: in transaction pooling mode, PREPARE, EXECUTE and DEALLOCATE must each be sent as a query of their own");
            return null;
        }
        if ((info.Session & SessionEffects.Discard) != 0 || (info.Session & SessionEffects.DeallocateAll) != 0)
        {
            // DISCARD ALL and DEALLOCATE ALL drop the client's statements, and the server's when they run.
            var all = (info.Session & SessionEffects.DeallocateAll) != 0
                || Encoding.ASCII.GetString(text).Contains("ALL", StringComparison.OrdinalIgnoreCase);
            if (all && server.TransactionStatus != PgTransactionStatus.Failed)
            {
                _statements.Clear();
                server.ForgetPreparedStatements();
                if ((info.Session & SessionEffects.Discard) != 0)
                    server.ForgetUnreportedParameters();
            }
            return new SqlRewrite(text, request);
        }

        var nameRange = info.StatementName;
        var name = text.AsSpan(nameRange.Offset, nameRange.Length);
        if ((info.Session & SessionEffects.Prepare) != 0)
        {
            if (_statements.Find(name) is not null)
            {
                RefuseStatement(kind, "42P05", $"prepared statement \"{Encoding.UTF8.GetString(name)}\" already exists");
                return null;
            }
            var tail = text.AsSpan(nameRange.Offset + nameRange.Length);
            var prepareInfo = info;
            var statement = _pool!.Catalog.Intern(PgStatementFlavor.Sql, tail, [], _ => prepareInfo);
            var registered = new PgClientStatement(name.ToArray(), statement);
            if (!_statements.TryAdd(registered))
            {
                RefuseStatement(kind, PgSqlState.ConfigurationLimitExceeded,
                    $"mproxy: this client has {_statements.Capacity} prepared statements, the limit (clients.maxPreparedStatements); DEALLOCATE some before preparing more");
                return null;
            }
            // The client's own PREPARE, renamed, prepares it (the client sees the server's answer,
            // errors included); a copy already on this connection is closed first.
            server.ClosePreparedIfPresent(statement, sync: !extended);
            server.NotePreparedBy(statement, sync: !extended);
            request = request with { Op = PgStatementOp.Prepare, Statement = statement, ClientStatement = registered };
            return new SqlRewrite(Rename(text, nameRange, statement), request);
        }
        if (_statements.Find(name) is not { } known)
            return new SqlRewrite(text, request); // the server reports that it does not exist
        var target = known.Statement;
        server.EnsurePrepared(target, PgResponseMode.Swallow, sync: !extended);
        if ((info.Session & SessionEffects.Deallocate) != 0)
        {
            _statements.Remove(known);
            server.ForgetPreparedStatement(target); // the DEALLOCATE removes it from this connection
        }
        else
        {
            request = request with { Op = PgStatementOp.Use, Statement = target };
        }
        return new SqlRewrite(Rename(text, nameRange, target), request);
    }

    private static byte[] Rename(byte[] text, TextRange name, PgStatement statement)
    {
        var renamed = new byte[text.Length - name.Length + statement.ServerNameBytes.Length];
        text.AsSpan(0, name.Offset).CopyTo(renamed);
        statement.ServerNameBytes.CopyTo(renamed.AsSpan(name.Offset));
        text.AsSpan(name.Offset + name.Length).CopyTo(renamed.AsSpan(name.Offset + statement.ServerNameBytes.Length));
        return renamed;
    }

    /// <summary>Answers a simple Query with CommandComplete and ReadyForQuery, in order after what is in flight.</summary>
    private void Answer(PgServerConnection server, string tag)
    {
        var complete = new ArrayBufferWriter<byte>();
        PgMessageWriter.WriteCommandComplete(complete, tag);
        server.EnqueueSynthetic(complete.WrittenSpan.ToArray(), readyForQuery: true, _unit);
        _unitOpen = false;
    }

    /// <summary>Answers a statement-level error the server would have raised (the unit's server is attached).</summary>
    private void RefuseStatement(PgRequestKind kind, string sqlState, string message) => Refuse(kind, sqlState, message, attached: true);

    private static bool TryReadCString(ref SequenceReader<byte> reader, out string value)
    {
        if (!reader.TryReadTo(out ReadOnlySequence<byte> bytes, 0))
        {
            value = "";
            return false;
        }
        value = bytes.Length == 0 ? "" : Encoding.UTF8.GetString(bytes);
        return true;
    }

    // ------------------------------------------------------------------ called by the server connection

    /// <summary>
    /// The attached server connection failed: tell the client (unless a message to it was cut in
    /// half, which leaves nothing sensible to say) and close the client's connection gracefully, so
    /// that the error is read before the close.
    /// </summary>
    public override async Task FailFromServerAsync(bool midMessage, string message)
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

    /// <summary>This client as SHOW CLIENTS shows it.</summary>
    public MProxy.Edge.Admin.ClientView Describe()
    {
        var server = _server;
        var attached = server is not null && server.IsAttachedTo(this);
        var state = _state switch
        {
            PgClientState.Startup => "login",
            PgClientState.Ready => _admin ? "admin" : attached ? "active" : _deferredBeginLength > 0 ? "idle-in-transaction" : "idle",
            _ => "closing",
        };
        return new(ProcessId, PgPoolRegistry.Protocol, User, Database, _qos?.Tenant.Name, Tracked[PgTrackedParameters.ApplicationName],
            state, _connection.RemoteEndPoint?.ToString(), _connectedAt, attached ? server!.Id : null, _tls?.Description);
    }

    public void RequestShutdown()
    {
        _shutdownRequested = true;
        if (_state == PgClientState.Ready && IsBetweenTransactions())
            _input.CancelPendingRead();
    }

    protected override bool IsBetweenTransactions()
    {
        if (_deferredBeginLength > 0)
            return false; // the client is in a transaction, though no server has seen it yet
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

    // ------------------------------------------------------------------ runaway rules

    /// <summary>A runaway rule fired on this client's running statement (from the janitor's thread).</summary>
    public void OnRunaway(QosSession session, RunawayHit hit, QosRejection cancel)
    {
        PgLog.RunawayHit(_edge.Log, ProcessId, hit.Rule?.Name ?? "", cancel.IsRejected);
        if (!cancel.IsRejected)
            return;
        var server = _server;
        if (server is null || !server.IsAttachedTo(this))
            return;
        var error = new ArrayBufferWriter<byte>();
        PgMessageWriter.WriteError(error, "ERROR", cancel.SqlState, cancel.FormatMessage());
        server.SetCancelReplacement(error.WrittenSpan.ToArray());
        _ = server.Pool.CancelAsync(server);
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
        await server.Pool.CancelAsync(server);
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
