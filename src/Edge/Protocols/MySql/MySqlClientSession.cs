using System.Buffers;
using System.Buffers.Binary;
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

namespace MProxy.Edge.Protocols.MySql;

/// <summary>The states of a client session; <see cref="MySqlClientSession"/> changes them in one place each.</summary>
internal enum MySqlClientState
{
    Handshake,
    Ready,

    /// <summary>COM_CHANGE_USER switched the client to mysql_native_password: its next packet is the scramble.</summary>
    ChangingUser,
    Closing,
    Closed,
}

/// <summary>
/// One client connection speaking the MySQL protocol to the edge: the login, then a loop that frames
/// the client's commands and forwards them to a server connection leased from its pool (per
/// transaction in transaction mode, for the whole session in session mode or once the client holds
/// session state), with prepared statements virtualized across pooled connections.
/// </summary>
internal sealed class MySqlClientSession : RelayClientSession, IClientSession, IRunawayTarget, MProxy.Edge.Admin.IDescribedClient
{
    /// <summary>utf8mb4_general_ci: the collation the edge's handshake announces.</summary>
    private const byte DefaultCollation = 45;

    private const int MaxStatements = 16_384;

    /// <summary>Session effects that tie the client to its server connection (tracked SETs excepted).</summary>
    private const SessionEffects PinningEffects = SessionEffects.SetParameter | SessionEffects.ResetParameter | SessionEffects.Prepare
        | SessionEffects.Execute | SessionEffects.Deallocate | SessionEffects.DeallocateAll | SessionEffects.Discard | SessionEffects.Listen
        | SessionEffects.TemporaryObject | SessionEffects.HoldableCursor | SessionEffects.AdvisoryLock | SessionEffects.Load
        | SessionEffects.UserVariable | SessionEffects.TableLock | SessionEffects.NamedLock | SessionEffects.UseDatabase;

    private readonly MySqlEdgeContext _edge;
    private readonly ConnectionContext _connection;
    private readonly Dictionary<uint, MySqlClientStatement> _statements = [];
    private MySqlClientLogin? _login;
    private TlsTransport? _tls;                          // set once the client started TLS
    private MySqlPool? _pool;                 // the pool of the database's primary when the session opened: its configuration and backends
    private UserConfig? _userConfig;
    private MySqlPoolVariant _variant;
    private CausalToken _token;               // read-your-writes: the latest write this client must see
    private MySqlServerConnection? _server;   // the last server attached; it may have gone back to the pool since
    private MySqlServerConnection? _writing;  // the server this batch is writing to
    private volatile bool _infile;            // the server asked for a LOCAL INFILE: the client's packets are file data
    private volatile MySqlSessionVariables _variables = MySqlSessionVariables.Default;
    private MySqlClientState _state = MySqlClientState.Handshake;
    private MySqlCapabilities _capabilities;
    private bool _multiStatements;
    private int _maxMessageBytes;
    private byte _errorSequence;              // the sequence id of an error answering the current command
    private uint _nextStatementId;
    private bool _unitOpen;                   // long data sent for an execution still to come
    private string? _refusedLongData;         // the refusal of that long data, answered at the execution
    private long _bytesToServer;
    private PendingChangeUser? _changeUser;
    private readonly DateTimeOffset _connectedAt;

    public MySqlClientSession(MySqlEdgeContext edge, ConnectionContext connection)
        : base(connection.Transport, Networking.Epoll.EpollTransport.LoopOf(connection))
    {
        _edge = edge;
        _connection = connection;
        (ProcessId, SecretKey) = edge.Clients.NewKey();
        _connectedAt = edge.Time.GetUtcNow();
    }

    public int ProcessId { get; }

    public int SecretKey { get; }

    private uint ClientId => (uint)ProcessId;

    public string User { get; private set; } = "";

    public string Database { get; private set; } = "";

    public MySqlClientState State => _state;

    public MySqlServerConnection? Server => _server;

    public async Task RunAsync()
    {
        var remote = _connection.RemoteEndPoint?.ToString();
        var registered = false;
        try
        {
            var config = _edge.Config.Current;
            _maxMessageBytes = config.Clients.MaxMessageBytes;
            using (var loginTimeout = new CancellationTokenSource(config.Clients.LoginTimeout, _edge.Time))
            {
                _login = new MySqlClientLogin(_input, _output);
                await _login.SendHandshakeAsync(ClientId, _edge.Pools.ServerVersion, DefaultCollation, offerTls: config.Tls is not null, loginTimeout.Token);
                var response = await ReadHandshakeResponseAsync(config, remote, loginTimeout.Token);
                if (response is null)
                    return; // the TLS handshake failed
                _errorSequence = _login.Sequence;
                User = response.User;
                if (!_edge.Clients.TryRegister(this, config.Clients.MaxConnections))
                {
                    var shutting = _edge.Clients.ShuttingDown;
                    var reason = shutting
                        ? "mproxy: the proxy is shutting down [57P03]"
                        : $"mproxy: too many client connections (the limit is clients.maxConnections = {config.Clients.MaxConnections}) [53300]";
                    MySqlLog.ClientRefused(_edge.Log, remote, reason);
                    throw new MySqlErrorException(shutting ? MySqlError.ServerShutdown : MySqlError.TooManyConnections, reason, fatal: true);
                }
                registered = true;
                await LoginAsync(config, response, remote, loginTimeout.Token);
            }
            _state = MySqlClientState.Ready;
            await CommandLoopAsync();
        }
        catch (MySqlProtocolException e)
        {
            MySqlLog.ClientProtocolViolation(_edge.Log, ClientId, e.Message);
            await TryWriteFatalAsync(e.TooLarge ? MySqlError.PacketTooLarge : MySqlError.MalformedPacket, "mproxy: invalid packet from client: " + e.Message + " [08P01]");
        }
        catch (MySqlErrorException e)
        {
            if (_state == MySqlClientState.Handshake && _login is not null)
                _errorSequence = _login.Sequence;
            await TryWriteFatalAsync(e.Error, e.Message);
        }
        catch (OperationCanceledException) when (_state == MySqlClientState.Handshake)
        {
            await TryWriteFatalAsync(MySqlError.HandshakeError, "mproxy: the client did not complete its login in time");
        }
        catch (Exception e) when (e is IOException or ConnectionResetException or ConnectionAbortedException or InvalidOperationException or EndOfStreamException)
        {
            // The client went away.
        }
        finally
        {
            _state = MySqlClientState.Closed;
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
            MySqlLog.ClientDisconnected(_edge.Log, ClientId);
        }
    }

    // ------------------------------------------------------------------ login

    /// <summary>
    /// The client's HandshakeResponse41 — after an SSLRequest and the TLS handshake when the client
    /// asks for TLS (offered when the edge has a certificate). With <c>tls.mode: require</c> a
    /// cleartext login is refused (3159). Null when the TLS handshake failed.
    /// </summary>
    private async Task<MySqlHandshakeResponse?> ReadHandshakeResponseAsync(EdgeConfig config, string? remote, CancellationToken cancellationToken)
    {
        var response = await _login!.ReadResponseAsync(tlsOffered: config.Tls is not null, cancellationToken);
        if (response is not null)
        {
            if (config.Tls is { Mode: TlsMode.Require })
            {
                MySqlLog.ClientRefused(_edge.Log, remote, "a cleartext login where tls.mode is require");
                throw new MySqlErrorException(MySqlError.SecureTransportRequired,
                    "mproxy: Connections using insecure transport are prohibited (tls.mode is require): connect with SSL", fatal: true);
            }
            return response;
        }
        // Unlike PostgreSQL's, a MySQL client does not wait for an answer: its TLS ClientHello may
        // already be buffered behind the SSLRequest. Whatever follows goes to the TLS handshake
        // (through the same buffer), never to the login as cleartext.
        try
        {
            _tls = await TlsTransport.AcceptAsync(_connection.Transport, config.Tls!, cancellationToken);
        }
        catch (AuthenticationException e)
        {
            MySqlLog.ClientTlsFailed(_edge.Log, remote, e.InnerException?.Message ?? e.Message);
            return null;
        }
        _input = _tls.Input;
        _output = _tls.Output;
        _login.UseTransport(_tls);
        // A second SSLRequest (over TLS) is refused by ReadResponseAsync.
        return await _login.ReadResponseAsync(tlsOffered: false, cancellationToken)
            ?? throw new MySqlErrorException(MySqlError.HandshakeError, "mproxy: a second SSL request", fatal: true);
    }

    private async Task LoginAsync(EdgeConfig config, MySqlHandshakeResponse response, string? remote, CancellationToken cancellationToken)
    {
        var userConfig = config.FindUser(response.User);
        try
        {
            await _login!.AuthenticateAsync(response, config.Auth.Method, userConfig, cancellationToken);
        }
        catch (MySqlErrorException e)
        {
            MySqlLog.ClientLoginFailed(_edge.Log, ClientId, remote, response.User, e.Message);
            throw;
        }
        _capabilities = response.Capabilities;
        _multiStatements = (_capabilities & MySqlCapabilities.MultiStatements) != 0;
        await OpenSessionAsync(config, response.User, userConfig, response.Database, response.Collation, cancellationToken);
        MySqlPacketWriter.WriteOk(_output, _login!.Sequence, MySqlServerStatus.Autocommit);
        await _output.FlushAsync(cancellationToken);
        MySqlLog.ClientLoggedIn(_edge.Log, ClientId, remote, User, Database);
    }

    /// <summary>Picks the pool for the user and database, opens the QoS session, and checks the server login once per pool.</summary>
    private async Task OpenSessionAsync(EdgeConfig config, string user, UserConfig? userConfig, string? databaseName, byte collation, CancellationToken cancellationToken)
    {
        var database = databaseName is null ? DefaultDatabase(config) : FindDatabase(config, databaseName);
        if (database is null)
        {
            throw new MySqlErrorException(MySqlError.UnknownDatabase, databaseName is null
                ? "mproxy: no MySQL database is configured"
                : $"mproxy: Unknown database '{databaseName}'", fatal: true);
        }
        User = user;
        Database = database.Name;
        var variant = new MySqlPoolVariant((_capabilities & MySqlCapabilities.FoundRows) != 0, collation == 0 ? DefaultCollation : collation);
        _userConfig = userConfig;
        _variant = variant;
        _pool = _edge.Pools.GetOrCreate(database, userConfig, user, variant);
        if (_pool.Backends?.Topology.Primary is { } primary)
            _pool = PoolOf(primary);
        _qos?.Dispose();
        _qos = null;
        if (_edge.Qos is { Config.Enabled: true } gate)
            _qos = gate.OpenSession(gate.ResolveTenant(new TenantIdentity(user, Database, null)), this);
        _telemetry?.Dispose();
        _telemetry = _edge.Telemetry?.OpenSession(MySqlPoolRegistry.Protocol, Database, _qos?.Tenant.Name ?? user);
        if (!_pool.HasConnected)
        {
            // No server connection has been opened yet: open one now, so that a bad server login shows at connect.
            var server = await AcquireAsync(_pool, Loop, cancellationToken);
            _pool.Return(server);
        }
    }

    private static DatabaseConfig? FindDatabase(EdgeConfig config, string name) =>
        config.FindDatabase(name) is { Protocol: DatabaseProtocol.MySql } database ? database : null;

    private static DatabaseConfig? DefaultDatabase(EdgeConfig config)
    {
        foreach (var database in config.Databases)
            if (database.Protocol == DatabaseProtocol.MySql)
                return database;
        return null;
    }

    // ------------------------------------------------------------------ command loop

    protected override Task WriteShutdownAsync() => TryWriteFatalAsync(MySqlError.ServerShutdown, "mproxy: the proxy is shutting down [57P03]");

    /// <summary>Handles every whole message in the buffer; returns false when the client quit.</summary>
    [AsyncMethodBuilder(typeof(PooledValueTaskMethodBuilder<>))]
    protected override async ValueTask<bool> ProcessBatchAsync(ReadOnlySequence<byte> buffer)
    {
        _consumed = buffer.Start;
        while (MySqlFrame.TryReadMessage(buffer, _maxMessageBytes, out var message, out var payloadLength, out var sequence, out var split))
        {
            if (!await HandleMessageAsync(message, payloadLength, sequence, split))
                return false;
            buffer = buffer.Slice(message.End);
            _consumed = buffer.Start;
        }
        return true;
    }

    [AsyncMethodBuilder(typeof(PooledValueTaskMethodBuilder<>))]
    private async ValueTask<bool> HandleMessageAsync(ReadOnlySequence<byte> message, long payloadLength, byte sequence, bool split)
    {
        _errorSequence = (byte)(sequence + 1);
        if (_infile)
        {
            // LOCAL INFILE data for the attached server, up to an empty packet.
            if (TryHoldAttachedServer())
                CopyToServer(_writing!, message);
            if (payloadLength == 0)
                _infile = false;
            return true;
        }
        if (payloadLength == 0)
            MySqlProtocolException.Throw("empty command packet");
        var payload = MySqlFrame.Payload(message, split);
        if (_state == MySqlClientState.ChangingUser)
        {
            await CompleteChangeUserAsync(payload.ToArray());
            return true;
        }
        var command = (MySqlCommandCode)payload.FirstSpan[0];
        switch (command)
        {
            case MySqlCommandCode.Quit:
                return false;
            case MySqlCommandCode.Query:
                await QueryAsync(message, payload, sequence);
                return true;
            case MySqlCommandCode.StmtExecute:
                await ExecuteAsync(message, payload, sequence, split);
                return true;
            case MySqlCommandCode.StmtPrepare:
                await PrepareAsync(message, payload, sequence);
                return true;
            case MySqlCommandCode.StmtSendLongData:
                await SendLongDataAsync(message, payload, sequence, split);
                return true;
            case MySqlCommandCode.StmtClose:
                CloseStatement(payload);
                return true;
            case MySqlCommandCode.StmtReset:
                await ResetStatementAsync(message, payload, sequence, split);
                return true;
            case MySqlCommandCode.StmtFetch:
                await FetchAsync(message, payload, sequence, split);
                return true;
            case MySqlCommandCode.Ping:
                await RespondOkAsync(sequence);
                return true;
            case MySqlCommandCode.InitDb:
                await InitDbAsync(message, payload, sequence);
                return true;
            case MySqlCommandCode.FieldList:
                await ForwardAsync(message, sequence, MySqlResponseKind.FieldList, pin: false);
                return true;
            case MySqlCommandCode.Statistics:
                await ForwardAsync(message, sequence, MySqlResponseKind.Single, pin: false);
                return true;
            case MySqlCommandCode.SetOption:
                await SetOptionAsync(payload, sequence);
                return true;
            case MySqlCommandCode.ResetConnection:
                await ResetConnectionAsync(message, sequence);
                return true;
            case MySqlCommandCode.ChangeUser:
                await ChangeUserAsync(payload.ToArray(), sequence);
                return true;
            default:
                await RespondAsync(MySqlPacketWriter.ErrorBytes((byte)(sequence + 1), MySqlError.UnknownCommand,
                    $"mproxy: command 0x{(byte)command:X2} ({command}) is not supported through the proxy"));
                return true;
        }
    }

    // ------------------------------------------------------------------ COM_QUERY

    /// <summary>What the edge needs to know of a query text before it runs.</summary>
    private readonly record struct QueryFacts(
        ulong Fingerprint, bool IsWrite, QueryHints Hints, int StatementCount, SessionEffects Session, bool LoadLocal, List<(string Name, string Assignment)>? Tracked,
        TransactionBoundary Boundary = TransactionBoundary.None);

    [AsyncMethodBuilder(typeof(PooledValueTaskMethodBuilder))]
    private async ValueTask QueryAsync(ReadOnlySequence<byte> message, ReadOnlySequence<byte> payload, byte sequence)
    {
        var facts = ClassifyQuery(payload.Slice(1));
        if (facts.StatementCount > 1 && !_multiStatements)
        {
            await RespondAsync(MySqlPacketWriter.ErrorBytes((byte)(sequence + 1), MySqlError.ParseError,
                "mproxy: several statements in one query need the CLIENT_MULTI_STATEMENTS capability (or COM_SET_OPTION)"));
            return;
        }
        if (facts.LoadLocal && !_pool!.Database.AllowLoadDataLocal)
        {
            MySqlLog.LoadLocalRefused(_edge.Log, ClientId, Database);
            await RespondAsync(MySqlPacketWriter.ErrorBytes((byte)(sequence + 1), MySqlError.NotAllowedCommand,
                $"mproxy: LOAD DATA LOCAL is not enabled for database '{Database}' (set allowLoadDataLocal: true on the database to allow it)"));
            return;
        }
        MySqlSessionVariables? variables = null;
        var pin = false;
        if (facts.Tracked is { } tracked)
        {
            if (tracked.Count > 0)
                variables = _variables.With(tracked);
        }
        else if ((facts.Session & PinningEffects) != 0)
        {
            pin = true;
        }
        if (!await BeginUnitAsync(facts.Fingerprint, facts.IsWrite, facts.Hints, sequence, pinsSession: pin, closesTransaction: facts.Boundary == TransactionBoundary.Closes))
            return;
        if (pin)
            Pin(facts.Session);
        _writing!.Enqueue(new MySqlPendingRequest(MySqlResponseKind.ResultSet, MySqlResponseMode.Forward, _unit, Variables: variables));
        CopyToServer(_writing, message);
        EndUnitOnServer();
    }

    private QueryFacts ClassifyQuery(ReadOnlySequence<byte> sql)
    {
        if (sql.IsSingleSegment)
            return Classify(sql.FirstSpan);
        var array = ArrayPool<byte>.Shared.Rent((int)sql.Length);
        try
        {
            sql.CopyTo(array);
            return Classify(array.AsSpan(0, (int)sql.Length));
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(array);
        }
    }

    private static QueryFacts Classify(ReadOnlySpan<byte> sql)
    {
        var rules = RoutingRules.Default;
        var info = StatementClassifier.Classify(sql, SqlDialect.MySql, rules);
        List<(string, string)>? tracked = null;
        if (info.Kind == StatementKind.Set && info.StatementCount == 1 && (info.Session & ~SessionEffects.SetParameter) == 0
            && MySqlSessionVariables.TryParse(sql, rules, out var updates))
        {
            tracked = updates;
        }
        var loadLocal = info.Kind == StatementKind.Load && IsLoadLocal(sql, rules);
        return new QueryFacts(info.Fingerprint, info.IsWrite, info.Hints, info.StatementCount, info.Session, loadLocal, tracked, info.Boundary);
    }

    /// <summary>LOAD DATA|XML … LOCAL INFILE: the LOCAL keyword before INFILE.</summary>
    private static bool IsLoadLocal(ReadOnlySpan<byte> sql, RoutingRules rules)
    {
        var lexer = new SqlLexer(sql, SqlDialect.MySql, rules.LexerOptions(SqlDialect.MySql));
        while (lexer.NextSignificant(out var token))
        {
            if (token.Is(SqlKeyword.Local))
                return true;
            if (token.Kind == SqlTokenKind.Word && System.Text.Ascii.EqualsIgnoreCase(token.Slice(sql), "INFILE"u8))
                return false;
        }
        return false;
    }

    private void Pin(SessionEffects effects)
    {
        if (_writing!.IsPinned)
            return;
        _writing.Pin();
        MySqlLog.ClientPinned(_edge.Log, ClientId, effects.ToString());
    }

    /// <summary>Forwards a command whose response the edge only relays (COM_FIELD_LIST, COM_STATISTICS, COM_INIT_DB).</summary>
    private async ValueTask ForwardAsync(ReadOnlySequence<byte> message, byte sequence, MySqlResponseKind kind, bool pin)
    {
        if (!await BeginUnitAsync(0, isWrite: false, default, sequence, pinsSession: pin))
            return;
        if (pin)
            Pin(SessionEffects.UseDatabase);
        _writing!.Enqueue(new MySqlPendingRequest(kind, MySqlResponseMode.Forward, _unit));
        CopyToServer(_writing, message);
    }

    private async ValueTask InitDbAsync(ReadOnlySequence<byte> message, ReadOnlySequence<byte> payload, byte sequence)
    {
        var name = System.Text.Encoding.UTF8.GetString(payload.Slice(1).ToArray());
        if (name == Database || name == _pool!.Database.ServerDatabase)
        {
            // Already there (drivers send it after connecting): nothing for a server to do.
            await RespondOkAsync(sequence);
            return;
        }
        // Another database on the same server: the session now differs from the pool's, so it pins.
        await ForwardAsync(message, sequence, MySqlResponseKind.Ok, pin: true);
    }

    private async ValueTask SetOptionAsync(ReadOnlySequence<byte> payload, byte sequence)
    {
        if (payload.Length < 3)
            MySqlProtocolException.Throw("COM_SET_OPTION too short");
        Span<byte> option = stackalloc byte[2];
        payload.Slice(1, 2).CopyTo(option);
        switch (BinaryPrimitives.ReadUInt16LittleEndian(option))
        {
            case 0:
                _multiStatements = true;
                break;
            case 1:
                _multiStatements = false;
                break;
            default:
                await RespondAsync(MySqlPacketWriter.ErrorBytes((byte)(sequence + 1), MySqlError.UnknownCommand, "mproxy: unknown COM_SET_OPTION option"));
                return;
        }
        // The server connections always allow several statements; the edge enforces the client's choice.
        var bytes = new ArrayBufferWriter<byte>(16);
        MySqlPacketWriter.WriteEof(bytes, (byte)(sequence + 1), CurrentStatus());
        await RespondAsync(bytes.WrittenSpan.ToArray());
    }

    // ------------------------------------------------------------------ prepared statements

    private static uint ReadStatementId(in ReadOnlySequence<byte> payload)
    {
        if (payload.Length < 5)
            MySqlProtocolException.Throw("statement command too short");
        Span<byte> id = stackalloc byte[4];
        payload.Slice(1, 4).CopyTo(id);
        return BinaryPrimitives.ReadUInt32LittleEndian(id);
    }

    private MySqlClientStatement? FindStatement(uint id) =>
        _statements.TryGetValue(id, out var statement) && statement.State == MySqlStatementState.Prepared ? statement : null;

    private static string UnknownStatement(uint id, string command) => $"mproxy: Unknown prepared statement handler ({id}) given to {command}";

    private async ValueTask PrepareAsync(ReadOnlySequence<byte> message, ReadOnlySequence<byte> payload, byte sequence)
    {
        if (_statements.Count >= MaxStatements)
        {
            // Forget statements whose preparation failed before refusing.
            foreach (var (id, s) in _statements)
                if (s.State == MySqlStatementState.Failed)
                    _statements.Remove(id);
            if (_statements.Count >= MaxStatements)
            {
                await RespondAsync(MySqlPacketWriter.ErrorBytes((byte)(sequence + 1), new MySqlError(1461, "42000"),
                    $"mproxy: too many prepared statements on this connection (at most {MaxStatements}); close some first"));
                return;
            }
        }
        var sql = payload.Slice(1).ToArray();
        var facts = Classify(sql);
        var statement = new MySqlClientStatement(++_nextStatementId, sql, facts.Fingerprint, facts.IsWrite, facts.Hints);
        if (!await BeginUnitAsync(facts.Fingerprint, facts.IsWrite, facts.Hints, sequence))
            return;
        _statements[statement.Id] = statement;
        _writing!.Enqueue(new MySqlPendingRequest(MySqlResponseKind.Prepare, MySqlResponseMode.Forward, _unit, Statement: statement));
        CopyToServer(_writing, message);
    }

    [AsyncMethodBuilder(typeof(PooledValueTaskMethodBuilder))]
    private async ValueTask ExecuteAsync(ReadOnlySequence<byte> message, ReadOnlySequence<byte> payload, byte sequence, bool split)
    {
        var id = ReadStatementId(payload);
        if (payload.Length < 10)
            MySqlProtocolException.Throw("COM_STMT_EXECUTE too short");
        var statement = FindStatement(id);
        if (statement is null)
        {
            await RespondAsync(MySqlPacketWriter.ErrorBytes((byte)(sequence + 1), MySqlError.UnknownStatement, UnknownStatement(id, "mysqld_stmt_execute")));
            return;
        }
        if (_refusedLongData is { } refusal)
        {
            _refusedLongData = null;
            _unitOpen = false;
            await RespondAsync(MySqlPacketWriter.ErrorBytes((byte)(sequence + 1), MySqlError.ResourceLimit, refusal));
            return;
        }
        var cursor = payload.Slice(5, 1).FirstSpan[0] != 0;
        if (!await BeginUnitAsync(statement.Fingerprint, statement.IsWrite, statement.Hints, sequence, pinsSession: cursor))
            return;
        var server = _writing!;
        var serverStatement = await EnsurePreparedAsync(server, statement, sequence);
        if (serverStatement is null)
        {
            if (_unitOpen)
            {
                _unitOpen = false;
                server.SetUnitOpen(false);
            }
            return;
        }
        if (cursor)
            Pin(SessionEffects.HoldableCursor);
        server.Enqueue(new MySqlPendingRequest(MySqlResponseKind.ResultSet, MySqlResponseMode.Forward, _unit));
        WriteExecute(server, statement, serverStatement, message, payload, sequence, split);
        EndUnitOnServer();
        if (_unitOpen)
        {
            _unitOpen = false;
            server.SetUnitOpen(false);
        }
    }

    /// <summary>
    /// The server statement for <paramref name="statement"/> on <paramref name="server"/>: cached, or
    /// prepared now (the edge's own COM_STMT_PREPARE, awaited). Null after answering the client with
    /// the error when the server refuses to prepare it.
    /// </summary>
    private async ValueTask<MySqlServerStatement?> EnsurePreparedAsync(MySqlServerConnection server, MySqlClientStatement statement, byte sequence)
    {
        var generation = server.StatementsGeneration;
        if (ReferenceEquals(statement.CachedServer, server) && statement.CachedGeneration == generation && statement.CachedServerStatement is { } known)
            return known;
        if (server.FindStatement(statement.Key) is { } cached)
            return Remember(statement, server, generation, cached);
        var request = new MySqlInternalRequest();
        server.Enqueue(new MySqlPendingRequest(MySqlResponseKind.Prepare, MySqlResponseMode.Swallow, Internal: request, StatementKey: statement.Key));
        MySqlPacketWriter.WriteCommand(server.Output, MySqlCommandCode.StmtPrepare, statement.Sql);
        await server.Output.FlushAsync();
        var result = await request.Task;
        if (result.Error is null && server.FindStatement(statement.Key) is { } prepared)
            return Remember(statement, server, server.StatementsGeneration, prepared);
        server.EnqueueSynthetic(MySqlPacketWriter.ErrorBytes((byte)(sequence + 1), new MySqlError(1105, "HY000"),
            "mproxy: could not prepare the statement again on another server connection: " + (result.Error ?? "unknown error")), _unit);
        return null;
    }

    private static MySqlServerStatement Remember(MySqlClientStatement statement, MySqlServerConnection server, int generation, MySqlServerStatement serverStatement)
    {
        statement.CachedServer = server;
        statement.CachedGeneration = generation;
        statement.CachedServerStatement = serverStatement;
        return serverStatement;
    }

    /// <summary>
    /// Writes COM_STMT_EXECUTE with the server's statement id. Parameter types the client bound on an
    /// earlier execution (new-params-bound flag 0) are inserted when this server statement has not
    /// been executed with them.
    /// </summary>
    private void WriteExecute(MySqlServerConnection server, MySqlClientStatement statement, MySqlServerStatement serverStatement, in ReadOnlySequence<byte> message, in ReadOnlySequence<byte> payload, byte sequence, bool split)
    {
        var parameters = statement.Parameters;
        var insertTypes = false;
        if (parameters > 0)
        {
            var boundOffset = 10 + (parameters + 7) / 8;
            if (payload.Length > boundOffset)
            {
                var bound = payload.Slice(boundOffset, 1).FirstSpan[0];
                if (bound == 1 && payload.Length >= boundOffset + 1 + 2 * parameters)
                {
                    var types = payload.Slice(boundOffset + 1, 2 * parameters);
                    if (statement.ParameterTypes is not { } known || !SequenceEquals(types, known))
                        statement.ParameterTypes = types.ToArray();
                    serverStatement.TypesSent = statement.ParameterTypes;
                }
                else if (bound == 0 && statement.ParameterTypes is { } remembered && !SameTypes(serverStatement.TypesSent, remembered))
                {
                    insertTypes = true;
                    serverStatement.TypesSent = remembered;
                    var rebuilt = new byte[payload.Length + remembered.Length];
                    payload.Slice(0, boundOffset).CopyTo(rebuilt);
                    rebuilt[boundOffset] = 1;
                    remembered.CopyTo(rebuilt, boundOffset + 1);
                    payload.Slice(boundOffset + 1).CopyTo(rebuilt.AsSpan(boundOffset + 1 + remembered.Length));
                    BinaryPrimitives.WriteUInt32LittleEndian(rebuilt.AsSpan(1), serverStatement.ServerId);
                    MySqlFrame.WriteMessage(server.Output, sequence, rebuilt);
                    _bytesToServer += rebuilt.Length;
                }
            }
        }
        if (!insertTypes)
            WriteWithStatementId(server, serverStatement.ServerId, message, payload, sequence, split);
    }

    /// <summary>Whether the server statement last ran with these parameter types (whichever client bound them).</summary>
    private static bool SameTypes(byte[]? sent, byte[] types) =>
        ReferenceEquals(sent, types) || (sent is not null && sent.AsSpan().SequenceEqual(types));

    private static bool SequenceEquals(in ReadOnlySequence<byte> bytes, byte[] other) =>
        bytes.Length == other.Length && (bytes.IsSingleSegment ? bytes.FirstSpan.SequenceEqual(other) : bytes.ToArray().AsSpan().SequenceEqual(other));

    /// <summary>Forwards a statement command with the statement id replaced: header and id written, the rest copied segment by segment.</summary>
    private void WriteWithStatementId(MySqlServerConnection server, uint serverId, in ReadOnlySequence<byte> message, in ReadOnlySequence<byte> payload, byte sequence, bool split)
    {
        var output = server.Output;
        if (split)
        {
            var rebuilt = payload.ToArray();
            BinaryPrimitives.WriteUInt32LittleEndian(rebuilt.AsSpan(1), serverId);
            MySqlFrame.WriteMessage(output, sequence, rebuilt);
            _bytesToServer += rebuilt.Length;
            return;
        }
        var span = output.GetSpan(MySqlFrame.HeaderLength + 5);
        MySqlFrame.WriteHeader(span, (int)payload.Length, sequence);
        span[4] = payload.FirstSpan[0];
        BinaryPrimitives.WriteUInt32LittleEndian(span[5..], serverId);
        output.Advance(MySqlFrame.HeaderLength + 5);
        foreach (var segment in payload.Slice(5))
            output.Write(segment.Span);
        _bytesToServer += message.Length;
    }

    private async ValueTask SendLongDataAsync(ReadOnlySequence<byte> message, ReadOnlySequence<byte> payload, byte sequence, bool split)
    {
        // No response of its own: refusals are answered at the execution.
        var statement = FindStatement(ReadStatementId(payload));
        if (statement is null || _refusedLongData is not null)
            return;
        if (!_unitOpen)
        {
            var unitBefore = _unit;
            if (!await BeginUnitAsync(statement.Fingerprint, statement.IsWrite, statement.Hints, sequence, refusal: r => _refusedLongData = r))
                return;
            _ = unitBefore;
            _unitOpen = true;
            _writing!.SetUnitOpen(true);
        }
        else if (!TryHoldAttachedServer())
        {
            return;
        }
        var server = _writing!;
        var serverStatement = await EnsurePreparedAsync(server, statement, sequence);
        if (serverStatement is null)
            return;
        WriteWithStatementId(server, serverStatement.ServerId, message, payload, sequence, split);
    }

    private void CloseStatement(ReadOnlySequence<byte> payload)
    {
        // No response. The server statements stay cached on their connections for other clients (bounded).
        _statements.Remove(ReadStatementId(payload));
    }

    private async ValueTask ResetStatementAsync(ReadOnlySequence<byte> message, ReadOnlySequence<byte> payload, byte sequence, bool split)
    {
        var id = ReadStatementId(payload);
        var statement = FindStatement(id);
        if (statement is null)
        {
            await RespondAsync(MySqlPacketWriter.ErrorBytes((byte)(sequence + 1), MySqlError.UnknownStatement, UnknownStatement(id, "mysqld_stmt_reset")));
            return;
        }
        _refusedLongData = null;
        if (TryHoldAttachedServer() && _writing!.FindStatement(statement.Key) is { } serverStatement)
        {
            _writing.Enqueue(new MySqlPendingRequest(MySqlResponseKind.Ok, MySqlResponseMode.Forward));
            WriteWithStatementId(_writing, serverStatement.ServerId, message, payload, sequence, split);
            if (_unitOpen)
            {
                _unitOpen = false;
                _writing.SetUnitOpen(false);
            }
            return;
        }
        // No server holds long data for it: nothing to reset.
        _unitOpen = false;
        await RespondOkAsync(sequence);
    }

    private async ValueTask FetchAsync(ReadOnlySequence<byte> message, ReadOnlySequence<byte> payload, byte sequence, bool split)
    {
        var id = ReadStatementId(payload);
        var statement = FindStatement(id);
        // A cursor lives on the (pinned) server connection that opened it.
        if (statement is not null && TryHoldAttachedServer() && _writing!.FindStatement(statement.Key) is { } serverStatement)
        {
            _writing.Enqueue(new MySqlPendingRequest(MySqlResponseKind.Rows, MySqlResponseMode.Forward));
            WriteWithStatementId(_writing, serverStatement.ServerId, message, payload, sequence, split);
            return;
        }
        await RespondAsync(MySqlPacketWriter.ErrorBytes((byte)(sequence + 1), MySqlError.UnknownStatement, UnknownStatement(id, "mysqld_stmt_fetch")));
    }

    // ------------------------------------------------------------------ session reset and change user

    private async ValueTask ResetConnectionAsync(ReadOnlySequence<byte> message, byte sequence)
    {
        _statements.Clear();
        _variables = MySqlSessionVariables.Default;
        _unitOpen = false;
        _refusedLongData = null;
        if (TryHoldAttachedServer())
        {
            // The server resets too; on its OK the connection is no longer pinned and may go back to the pool.
            _writing!.Enqueue(new MySqlPendingRequest(MySqlResponseKind.Ok, MySqlResponseMode.Forward, Resets: true));
            CopyToServer(_writing, message);
            return;
        }
        await RespondOkAsync(sequence);
    }

    private sealed record PendingChangeUser(string User, string? Database, byte Collation, byte[] Nonce);

    /// <summary>
    /// COM_CHANGE_USER: the server connection is left (reset as when the client leaves), the new user
    /// is authenticated against the configuration — its scramble of the login nonce, or else after an
    /// auth switch to mysql_native_password — and the session starts over on the new user's pool.
    /// </summary>
    private async ValueTask ChangeUserAsync(byte[] payload, byte sequence)
    {
        var reader = new MySqlPayloadReader(payload);
        reader.Skip(1);
        var user = reader.ReadNullTerminatedString();
        byte[] auth = (_capabilities & MySqlCapabilities.SecureConnection) != 0
            ? reader.ReadBytes(reader.ReadByte()).ToArray()
            : reader.ReadNullTerminated().ToArray();
        var database = reader.Remaining > 0 ? reader.ReadNullTerminatedString(toEndIfMissing: true) : null;
        var collation = reader.Remaining >= 2 ? (byte)reader.ReadUInt16() : _pool!.Variant.Collation;
        var plugin = reader.Remaining > 0 && (_capabilities & MySqlCapabilities.PluginAuth) != 0 ? reader.ReadNullTerminatedString(toEndIfMissing: true) : MySqlAuthPlugins.NativePassword;

        await LeaveServerAsync();
        _statements.Clear();
        _variables = MySqlSessionVariables.Default;
        _unitOpen = false;
        _refusedLongData = null;

        var config = _edge.Config.Current;
        var pending = new PendingChangeUser(user, string.IsNullOrEmpty(database) ? null : database, collation, MySqlAuth.CreateNonce());
        if (plugin is MySqlAuthPlugins.NativePassword or MySqlAuthPlugins.CachingSha2Password
            && MySqlClientLogin.Verify(plugin, auth, _login!.Nonce, config.Auth.Method, config.FindUser(user)))
        {
            await FinishChangeUserAsync(pending, (byte)(sequence + 1));
            return;
        }
        // Ask for a mysql_native_password scramble of a fresh nonce.
        _changeUser = pending;
        _state = MySqlClientState.ChangingUser;
        MySqlPacketWriter.WritePayload(_output, (byte)(sequence + 1), p =>
        {
            p.Put(MySqlResponseHeader.AuthSwitch);
            p.PutNullTerminated(MySqlAuthPlugins.NativePassword);
            p.Write(pending.Nonce);
            p.Put(0);
        });
        await _output.FlushAsync();
    }

    private async ValueTask CompleteChangeUserAsync(byte[] auth)
    {
        var pending = _changeUser!;
        _changeUser = null;
        _state = MySqlClientState.Ready;
        var config = _edge.Config.Current;
        if (!MySqlClientLogin.Verify(MySqlAuthPlugins.NativePassword, auth, pending.Nonce, config.Auth.Method, config.FindUser(pending.User)))
        {
            MySqlLog.ClientLoginFailed(_edge.Log, ClientId, _connection.RemoteEndPoint?.ToString(), pending.User, "COM_CHANGE_USER: wrong password");
            throw MySqlClientLogin.AccessDenied(pending.User, auth.Length > 0);
        }
        await FinishChangeUserAsync(pending, _errorSequence);
    }

    private async ValueTask FinishChangeUserAsync(PendingChangeUser pending, byte sequence)
    {
        var config = _edge.Config.Current;
        _errorSequence = sequence;
        using var timeout = new CancellationTokenSource(config.Clients.LoginTimeout, _edge.Time);
        await OpenSessionAsync(config, pending.User, config.FindUser(pending.User), pending.Database, pending.Collation, timeout.Token);
        MySqlLog.ClientChangedUser(_edge.Log, ClientId, User, Database);
        MySqlPacketWriter.WriteOk(_output, sequence, MySqlServerStatus.Autocommit);
        await _output.FlushAsync();
    }

    /// <summary>Gives the server connection back (reset if the session left state on it) before the session changes identity.</summary>
    private async ValueTask LeaveServerAsync()
    {
        await EndBatchAsync();
        var server = _server;
        _server = null;
        server?.DetachClient(this);
        EndBalanced();
        _qos?.ReleaseSlot();
    }

    // ------------------------------------------------------------------ units: admission, scheduling, a server connection

    /// <summary>
    /// Starts a request unit: admits it (QoS: budget, runaway verdicts, hints), gets a scheduler slot
    /// and a server connection unless one is attached, and aligns the connection's session. On a
    /// refusal it answers the client (or hands the message to <paramref name="refusal"/>) and returns false.
    /// </summary>
    [AsyncMethodBuilder(typeof(PooledValueTaskMethodBuilder<>))]
    private async ValueTask<bool> BeginUnitAsync(ulong fingerprint, bool isWrite, QueryHints hints, byte sequence, Action<string>? refusal = null,
        bool pinsSession = false, bool closesTransaction = false)
    {
        var attached = TryHoldAttachedServer();
        if (_unitOpen && attached)
            return true; // the execution of the long data's unit
        if (attached && _writing is { } held && await held.ReleaseBetweenUnitsAsync(this))
        {
            _writing = null; // its unit was over: this one is a new transaction, routed and admitted afresh
            attached = false;
        }
        _captureTokenAfterUnit = false;
        QosAdmission admission = default;
        if (_qos is not null)
        {
            lock (_unitLock)
                _unit++;
            BeginTelemetry(fingerprint, isWrite, hints);
            try
            {
                admission = await _qos.AdmitAsync(hints, fingerprint, isWrite ? RuKind.Write : RuKind.Read, inTransaction: attached, CancellationToken.None);
            }
            catch (ObjectDisposedException)
            {
                throw new MySqlErrorException(MySqlError.ServerShutdown, "mproxy: the session is closing", fatal: true);
            }
            if (!admission.IsAdmitted)
            {
                Refuse(MySqlError.ForSqlState(admission.Rejection.SqlState), Tagged(admission.Rejection), sequence, attached, refusal);
                return false;
            }
        }
        else
        {
            _unit++;
            BeginTelemetry(fingerprint, isWrite, hints);
        }

        var backends = _pool!.Backends;
        if (!attached)
        {
            var target = _pool;
            if (backends is not null)
            {
                var info = new StatementInfo { Access = isWrite ? StatementAccess.Write : StatementAccess.Read, Fingerprint = fingerprint, Hints = hints };
                target = await RouteAsync(backends, info, pinsSession, sequence, refusal);
                if (target is null)
                    return false;
            }
            if (!await AttachWithinFailoverAsync(target, backends, admission.Priority, sequence, refusal))
                return false;
        }
        var server = _writing!;
        // Read-your-writes: after a unit that writes on the primary outside a transaction (or ends
        // one), the edge learns the primary's GTID position behind it, so that this client's later
        // reads go only to replicas that have applied it.
        _captureTokenAfterUnit = backends is { Config.ReadYourWrites: true, Config.ReplicaCount: > 0 }
            && server.Pool.IsPrimary
            && (closesTransaction || (isWrite && (server.Status & MySqlServerStatus.InTransaction) == 0));
        if (_qos is not null)
        {
            SyncGroupSettings(server, admission);
            _qos.Start(_edge.Qos!.Config.WeightsFor(Database));
        }
        _telemetry?.Sent(server.Pool.IsPrimary, server.Endpoint);
        return true;
    }

    /// <summary>
    /// Applies the admitted group's server settings and statement timeout (MariaDB
    /// <c>max_statement_time</c>, MySQL <c>max_execution_time</c>) to the connection when they differ
    /// from what it has, in one <c>SET SESSION</c> written before the unit's command; settings the
    /// group no longer has go back to the server's <c>DEFAULT</c>. A session variable is not
    /// transactional, so unlike PostgreSQL this also works inside a transaction.
    /// </summary>
    private void SyncGroupSettings(MySqlServerConnection server, in QosAdmission admission)
    {
        var changes = _settingChanges ??= [];
        if (!server.GroupSettings.Plan(admission, changes, out var timeout))
            return;
        var sql = new StringBuilder("SET SESSION ");
        var first = true;
        foreach (var (name, value) in changes)
            AppendAssignment(sql, ref first, name, value is null ? "DEFAULT" : SettingLiteral(value));
        if (timeout is { } t)
        {
            var inv = System.Globalization.CultureInfo.InvariantCulture;
            if (server.IsMariaDb)
                AppendAssignment(sql, ref first, "max_statement_time", t > TimeSpan.Zero ? t.TotalSeconds.ToString("0.###", inv) : "DEFAULT");
            else
                AppendAssignment(sql, ref first, "max_execution_time", t > TimeSpan.Zero ? ((long)Math.Ceiling(t.TotalMilliseconds)).ToString(inv) : "DEFAULT");
        }
        server.Enqueue(new MySqlPendingRequest(MySqlResponseKind.ResultSet, MySqlResponseMode.Swallow));
        MySqlPacketWriter.WriteQuery(server.Output, sql.ToString());

        static void AppendAssignment(StringBuilder sql, ref bool first, string name, string value)
        {
            if (!first)
                sql.Append(", ");
            first = false;
            sql.Append(name).Append(" = ").Append(value);
        }
    }

    /// <summary>A number as it is (numeric variables refuse strings), anything else as a string literal (the configuration forbids quotes and backslashes).</summary>
    private static string SettingLiteral(string value) =>
        decimal.TryParse(value, System.Globalization.NumberStyles.AllowLeadingSign | System.Globalization.NumberStyles.AllowDecimalPoint, System.Globalization.CultureInfo.InvariantCulture, out _)
            ? value
            : "'" + value + "'";

    private List<KeyValuePair<string, string?>>? _settingChanges;

    /// <summary>Whether the unit being written wrote on the primary: its position is fetched behind it (see <see cref="EndUnitOnServer"/>).</summary>
    private bool _captureTokenAfterUnit;

    /// <summary>The unit's command is written: ask for a read-your-writes token behind it if the unit wrote.</summary>
    private void EndUnitOnServer()
    {
        if (!_captureTokenAfterUnit)
            return;
        _captureTokenAfterUnit = false;
        _writing!.EnqueueCausalPositionQuery(OnCausalPosition);
    }

    /// <summary>The row of <see cref="MySqlServerConnection.CausalPositionQuery"/> after this client's write (called by the pump).</summary>
    private void OnCausalPosition(byte[] row)
    {
        try
        {
            var values = MySqlTextResult.ParseRow(row, 2);
            if (uint.TryParse(values[0], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var domain)
                && MySqlBackendProbe.GtidSequence(values[1], domain) is var sequence and > 0)
            {
                _token = _token.After(new Lsn(sequence), _edge.Time.GetTimestamp());
            }
        }
        catch (MySqlServerLoginException)
        {
            // a malformed answer: no token, reads may see older data (as without read-your-writes)
        }
    }

    /// <summary>
    /// Where a unit that starts a transaction goes: the router's decision (writes and sessions with
    /// state to the primary, reads by P2C over replicas that are healthy, within the lag bound and have
    /// applied this client's writes). Null when the unit was refused.
    /// </summary>
    [AsyncMethodBuilder(typeof(PooledValueTaskMethodBuilder<>))]
    private async ValueTask<MySqlPool?> RouteAsync(DatabaseBackends backends, StatementInfo info, bool pinsSession, byte sequence, Action<string>? refusal)
    {
        var hasState = pinsSession || _pool!.Mode == PoolMode.Session;
        var decision = backends.Route(info, hasState, _token);
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
                    Refuse(MySqlError.ServerShutdown, e.Message + " [57P03]", sequence, attached: false, refusal);
                    return null;
                }
            default:
                _qos?.Complete();
                Refuse(MySqlError.ServerShutdown,
                    $"mproxy: no replica of database '{Database}' can serve reads now (down or lagging) and backends.primaryServesReads is off; retry later [57P03]",
                    sequence, attached: false, refusal);
                return null;
        }
    }

    private MySqlPool PoolOf(BackendStatus backend) =>
        _edge.Pools.GetOrCreate(_pool!.Database, _userConfig, User, _variant, backend.Endpoint, backend.Index);

    /// <summary>
    /// Gets a scheduler slot and a connection from <paramref name="pool"/>. When its host cannot be
    /// reached and the database has backends, waits (bounded by backends.failoverWaitMs) for a usable
    /// primary — the old one back, or a promoted replica — instead of failing at once; a read whose
    /// replica failed goes to the primary.
    /// </summary>
    [AsyncMethodBuilder(typeof(PooledValueTaskMethodBuilder<>))]
    private async ValueTask<bool> AttachWithinFailoverAsync(MySqlPool pool, DatabaseBackends? backends, MProxy.Abstractions.Priority priority, byte sequence, Action<string>? refusal)
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
                    Refuse(MySqlError.ForSqlState(slot.Rejection.SqlState), Tagged(slot.Rejection), sequence, attached: false, refusal);
                    return false;
                }
                _telemetry?.SlotGranted(pool.Scheduler!.Name, priority, slot.Waited);
            }
            try
            {
                // Leased here rather than in a helper: an async frame on the stack when the pool wait
                // suspends is a boxed state machine per waited lease (see ServerPool.AcquireSlowAsync).
                if (_outputDirty)
                    await FlushDirectAsync();
                MySqlServerConnection server;
                try
                {
                    server = await pool.Connections.AcquireAsync(Loop, CancellationToken.None);
                }
                catch (PoolClosedException closed)
                {
                    throw PoolClosed(pool, closed);
                }
                AttachServer(pool, server);
                return true;
            }
            catch (Exception e) when (e is MySqlErrorException { Fatal: false } or PoolTimeoutException)
            {
                _qos?.ReleaseSlot();
                var retry = e is MySqlErrorException { Error.Code: var code } && code == MySqlError.ServerShutdown.Code
                    && backends is not null
                    && _edge.Time.GetElapsedTime(started) + delay < backends.Config.FailoverWait;
                if (!retry)
                {
                    _qos?.Complete();
                    var (error, text) = e is MySqlErrorException failure ? (failure.Error, failure.Message) : (MySqlError.TooManyConnections, e.Message + " [53300]");
                    Refuse(error, text, sequence, attached: false, refusal);
                    return false;
                }
                await Task.Delay(delay, _edge.Time);
                delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, TimeSpan.FromSeconds(1).Ticks));
                try
                {
                    var topology = backends!.Topology;
                    var wasReplica = !pool.IsPrimary;
                    pool = PoolOf(wasReplica && topology.HasUsablePrimary ? topology.Primary! : await backends.Monitor.WaitForPrimaryAsync(CancellationToken.None));
                }
                catch (BackendUnavailableException unavailable)
                {
                    _qos?.Complete();
                    Refuse(MySqlError.ServerShutdown, unavailable.Message + " [57P03]", sequence, attached: false, refusal);
                    return false;
                }
            }
        }
    }

    /// <summary>The unit's telemetry starts (a command without statement facts, like COM_PING, counts as unknown).</summary>
    private void BeginTelemetry(ulong fingerprint, bool isWrite, QueryHints hints)
    {
        if (_telemetry is null)
            return;
        var info = new StatementInfo { Access = isWrite ? StatementAccess.Write : StatementAccess.Read, Fingerprint = fingerprint, Hints = hints };
        _telemetry.Begin(_unit, info, classified: fingerprint != 0);
    }

    private static string Tagged(in QosRejection rejection) => rejection.FormatMessage() + " [" + rejection.SqlState + "]";

    /// <summary>Answers a refused command with an ERR; while a server is attached the answer goes through its queue, after what is in flight.</summary>
    private void Refuse(MySqlError error, string message, byte sequence, bool attached, Action<string>? refusal)
    {
        _telemetry?.Refused(error.SqlState);
        if (refusal is not null)
        {
            refusal(message);
            return;
        }
        var bytes = MySqlPacketWriter.ErrorBytes((byte)(sequence + 1), error, message);
        if (attached && _writing is not null)
            _writing.EnqueueSynthetic(bytes, _unit);
        else
            WriteDirect(bytes);
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

    /// <summary>Attaches a server connection just leased from <paramref name="pool"/> and aligns its session with the client's.</summary>
    private void AttachServer(MySqlPool pool, MySqlServerConnection server)
    {
        StartBalanced(pool);
        server.Attach(this);
        _server = server;
        _writing = server;
        server.WritePendingCloses();
        var variables = _variables;
        if (!ReferenceEquals(server.Variables, variables) && server.Variables.Text != variables.Text)
        {
            if (!server.Variables.IsDefault)
            {
                server.Enqueue(new MySqlPendingRequest(MySqlResponseKind.Ok, MySqlResponseMode.Swallow, Resets: true));
                MySqlPacketWriter.WriteCommand(server.Output, MySqlCommandCode.ResetConnection);
            }
            if (!variables.IsDefault)
            {
                server.Enqueue(new MySqlPendingRequest(MySqlResponseKind.ResultSet, MySqlResponseMode.Swallow, Variables: variables));
                MySqlPacketWriter.WriteQuery(server.Output, variables.Text);
            }
        }
    }

    [AsyncMethodBuilder(typeof(PooledValueTaskMethodBuilder<>))]
    private static async ValueTask<MySqlServerConnection> AcquireAsync(MySqlPool pool, int loop, CancellationToken cancellationToken)
    {
        try
        {
            return await pool.Connections.AcquireAsync(loop, cancellationToken);
        }
        catch (PoolClosedException e)
        {
            throw PoolClosed(pool, e);
        }
    }

    /// <summary>A host's pool closes when its breaker opens or it stops being the primary: route again (fatal only without backends: the edge is stopping).</summary>
    private static MySqlErrorException PoolClosed(MySqlPool pool, PoolClosedException e) =>
        new(MySqlError.ServerShutdown, e.Message + " [57P03]", fatal: pool.Backends is null);

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

    private MySqlServerStatus CurrentStatus()
    {
        var server = _server;
        return server is not null && server.IsAttachedTo(this) ? server.Status : MySqlServerStatus.Autocommit;
    }

    private ValueTask RespondOkAsync(byte sequence)
    {
        var bytes = new ArrayBufferWriter<byte>(16);
        MySqlPacketWriter.WriteOk(bytes, (byte)(sequence + 1), CurrentStatus());
        return RespondAsync(bytes.WrittenSpan.ToArray());
    }

    /// <summary>The edge's own response: behind the attached server's responses in flight, or straight to the client.</summary>
    private async ValueTask RespondAsync(byte[] packets)
    {
        if (TryHoldAttachedServer())
            _writing!.EnqueueSynthetic(packets, 0);
        else
            WriteDirect(packets);
    }

    private void WriteDirect(ReadOnlySpan<byte> bytes)
    {
        _output.Write(bytes);
        _outputDirty = true;
    }

    private void CopyToServer(MySqlServerConnection server, in ReadOnlySequence<byte> bytes)
    {
        server.Output.WriteSequence(bytes);
        _bytesToServer += bytes.Length;
    }

    // ------------------------------------------------------------------ called by the server connection

    /// <summary>A tracked SET the client sent succeeded: these are its variables now (called by the pump before the OK reaches the client).</summary>
    public void OnVariablesApplied(MySqlSessionVariables variables) => _variables = variables;

    /// <summary>The server asked for a LOCAL INFILE: the client's next packets, up to an empty one, are the file (called by the pump before the request reaches the client).</summary>
    public void OnInfileRequested() => _infile = true;

    /// <summary>The attached server connection failed: tell the client (unless a packet to it was cut in half) and close its connection.</summary>
    public override async Task FailFromServerAsync(bool midMessage, string message)
    {
        if (midMessage || _outputBroken)
        {
            Abort(message);
            return;
        }
        try
        {
            MySqlPacketWriter.WriteError(_output, _errorSequence, MySqlError.ConnectionLost, message);
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

    /// <summary>This client as SHOW CLIENTS shows it (no application name: connection attributes are not read).</summary>
    public MProxy.Edge.Admin.ClientView Describe()
    {
        var server = _server;
        var attached = server is not null && server.IsAttachedTo(this);
        var state = _state switch
        {
            MySqlClientState.Handshake => "login",
            MySqlClientState.Ready or MySqlClientState.ChangingUser => attached ? "active" : "idle",
            _ => "closing",
        };
        return new(ProcessId, MySqlPoolRegistry.Protocol, User, Database, _qos?.Tenant.Name, ApplicationName: null,
            state, _connection.RemoteEndPoint?.ToString(), _connectedAt, attached ? server!.Id : null, _tls?.Description);
    }

    public void RequestShutdown()
    {
        _shutdownRequested = true;
        if (_state == MySqlClientState.Ready && IsBetweenTransactions())
            _input.CancelPendingRead();
    }

    protected override bool IsBetweenTransactions()
    {
        var server = _server;
        return server is null
            || !server.IsAttachedTo(this)
            || ((_pool!.Mode == PoolMode.Session || server.IsPinned) && (server.Status & MySqlServerStatus.InTransaction) == 0);
    }

    public void Abort(string reason)
    {
        _state = MySqlClientState.Closing;
        _connection.Abort(new ConnectionAbortedException(reason));
    }

    // ------------------------------------------------------------------ runaway rules

    /// <summary>A runaway rule fired on this client's running statement (from the janitor's thread): KILL QUERY on the server, and the client is told why.</summary>
    public void OnRunaway(QosSession session, RunawayHit hit, QosRejection cancel)
    {
        MySqlLog.RunawayHit(_edge.Log, ClientId, hit.Rule?.Name ?? "", cancel.IsRejected);
        if (!cancel.IsRejected)
            return;
        var server = _server;
        if (server is null || !server.IsAttachedTo(this))
            return;
        server.SetCancelReplacement(Tagged(cancel));
        _ = server.Pool.CancelAsync(server);
    }

    private async Task TryWriteFatalAsync(MySqlError error, string message)
    {
        if (_outputBroken)
            return;
        try
        {
            MySqlPacketWriter.WriteError(_output, _errorSequence, error, message);
            await _output.FlushAsync();
        }
        catch
        {
            // the client is gone
        }
    }
}
