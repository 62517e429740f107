using System.Buffers;
using System.IO.Pipelines;
using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.Logging;
using MProxy.Edge.Configuration;
using MProxy.Edge.Networking;
using MProxy.Edge.Pooling;

namespace MProxy.Edge.Protocols.Postgres;

/// <summary>
/// One authenticated connection from the edge to a PostgreSQL server.
/// </summary>
/// <remarks>
/// <para>A single read loop (the pump) runs for the connection's whole life. It matches each server
/// message against the queue of requests sent (<see cref="PgRequestQueue"/>), forwards responses to
/// the attached client (coalescing contiguous messages into one copy, streaming large messages
/// without buffering them whole), swallows the responses to the edge's own requests, and keeps the
/// transaction status from ReadyForQuery.</para>
/// <para>The attached client's loop is the only writer of <c>Output</c>; it brackets each
/// batch of writes with <see cref="RelayServerConnection{TClient}.TryBeginWrite"/>/<see cref="RelayServerConnection{TClient}.EndWrite"/>. While a client is
/// attached the pump is the only writer of that client's output. In transaction mode the connection
/// goes back to the pool when nothing is pending, the client is not mid-batch and the transaction
/// status is idle — whichever of the pump or the client's loop observes that last does it.</para>
/// </remarks>
internal sealed class PgServerConnection : RelayServerConnection<PgClientSession>, IPooledConnection, IInventoriedServer
{
    private static long s_nextId;

    private readonly PgPool _pool;
    private readonly PgRequestQueue _queue = new();
    private readonly ILogger _log;
    private PgTransactionStatus _status = PgTransactionStatus.Idle;
    private bool _clientUnsynced;  // the client sent extended messages after its last Sync
    private bool _skipUntilSync;   // an extended request failed: the server skips to the next Sync
    private long _bodyRemaining;   // bytes of the current server message not read yet
    private bool _bodyForward;     // whether those bytes go to the client
    private byte[]? _cancelReplacement; // the edge cancelled the running request: answer this instead of the server's 57014

    public PgServerConnection(PgPool pool, ConnectionContext transport, PgServerStartup startup, HostPort endpoint, long openedAt, ILogger log)
        : base(transport, endpoint)
    {
        Statements = new PgServerStatements(Math.Max(1, pool.Database.Pool.MaxPreparedStatements));
        Id = Interlocked.Increment(ref s_nextId);
        _pool = pool;
        _log = log;
        OpenedAt = openedAt;
        IdleSince = openedAt;
        ProcessId = startup.ProcessId;
        SecretKey = startup.SecretKey;
        LoginParameters = startup.Parameters;
        Tracked = new string?[PgTrackedParameters.Count];
        foreach (var (name, value) in startup.Parameters)
        {
            var index = PgTrackedParameters.IndexOf(name);
            if (index >= 0)
                Tracked[index] = PgTrackedParameters.Share(value);
        }
    }

    public long Id { get; }

    public long OpenedAt { get; }

    public long IdleSince { get; set; }

    /// <summary>The server's process id and secret, for CancelRequest.</summary>
    public int ProcessId { get; }

    public int SecretKey { get; }

    /// <summary>ParameterStatus values the server sent at login.</summary>
    public IReadOnlyList<KeyValuePair<string, string>> LoginParameters { get; }

    /// <summary>The server's current values of the tracked parameters (null: the server default).</summary>
    public string?[] Tracked { get; }

    /// <summary>The pool this connection belongs to.</summary>
    public PgPool Pool => _pool;

    /// <summary>Whether this connection's host is the database's primary now (true for databases without backends).</summary>
    public bool IsPrimaryConnection => _pool.Backends is not { } backends || backends.Topology.PrimaryIndex == _pool.BackendIndex;

    /// <summary>
    /// Behind the client's unit that wrote: <c>SELECT pg_current_wal_insert_lsn()</c>, whose answer
    /// (a position at or after the write's commit record) becomes the client's read-your-writes token.
    /// </summary>
    public void EnqueueCausalLsnQuery(PgClientSession client)
    {
        var request = new PgInternalRequest { OnValue = client.OnCausalLsn };
        lock (_sync)
            _queue.Enqueue(new PgPendingRequest(PgRequestKind.Query, PgResponseMode.Swallow, request));
        PgMessageWriter.WriteQuery(Output, "SELECT pg_current_wal_insert_lsn()");
    }

    /// <summary>The statements the edge prepared on this connection (guarded by its lock).</summary>
    private PgServerStatements Statements { get; }

    public int PreparedStatementCount
    {
        get
        {
            lock (_sync)
                return Statements.Count;
        }
    }

    public PgTransactionStatus TransactionStatus => _status;

    string IInventoriedServer.Transaction => _status switch
    {
        PgTransactionStatus.InTransaction => "in-transaction",
        PgTransactionStatus.Failed => "failed",
        _ => "idle",
    };

    int? IInventoriedServer.ClientId => Client?.ProcessId;

    /// <summary>Whether responses are still awaited on this connection.</summary>
    public bool HasPendingRequests
    {
        get
        {
            lock (_sync)
                return _queue.Count > 0;
        }
    }

    // ---------------------------------------------------------------- client side

    /// <summary>Attaches a freshly leased connection to a client, which then holds it for writing.</summary>
    public void Attach(PgClientSession client)
    {
        lock (_sync)
        {
            _client = client;
            _state = ServerConnectionState.Attached;
            _clientUnsynced = false;
            _writerBusy = true;
        }
    }

    /// <summary>Records a request the client (or the edge for it) is about to write to <c>Output</c>.</summary>
    public void Enqueue(PgRequestKind kind, PgResponseMode mode, int unit = 0)
    {
        lock (_sync)
        {
            _queue.Enqueue(new PgPendingRequest(kind, mode, Unit: unit));
            if (kind == PgRequestKind.Sync)
                _clientUnsynced = false;
            else if (mode == PgResponseMode.Forward && kind is not (PgRequestKind.Query or PgRequestKind.FunctionCall))
                _clientUnsynced = true;
        }
    }

    /// <summary>Records a request with its full description (prepared-statement bookkeeping included).</summary>
    public void Enqueue(in PgPendingRequest request)
    {
        lock (_sync)
        {
            _queue.Enqueue(request);
            if (request.Kind == PgRequestKind.Sync)
                _clientUnsynced = false;
            else if (request.Mode == PgResponseMode.Forward && request.IsExtended)
                _clientUnsynced = true;
        }
    }

    /// <summary>
    /// Makes <paramref name="statement"/> usable on this connection by the next request the client's
    /// loop writes: nothing if it is prepared here at its current generation (returns true);
    /// otherwise closes the least recently used statement when the set is full and the stale
    /// version if any, then prepares it (returns false). <paramref name="mode"/> says where the
    /// prepare's responses go: to the client for its own Parse, only errors for an implicit
    /// re-prepare. With <paramref name="sync"/>, a swallowed Sync follows a Parse (outside an
    /// extended-protocol run). Called by the client's loop while it holds the connection for writing.
    /// </summary>
    public bool EnsurePrepared(PgStatement statement, PgResponseMode mode, PgClientStatement? registering = null, bool sync = false, int unit = 0)
    {
        lock (_sync)
        {
            if (Statements.TryUse(statement, out var stale))
                return true;
            var wroteExtended = false;
            if (stale)
            {
                WriteCloseLocked(statement, Statements.GenerationOf(statement) ?? 0);
                wroteExtended = true;
            }
            else if (Statements.EvictionCandidate(statement) is { } evicted)
            {
                WriteCloseLocked(evicted, Statements.GenerationOf(evicted) ?? 0);
                wroteExtended = true;
            }
            Statements.Add(statement);
            var request = new PgPendingRequest(
                statement.Flavor == PgStatementFlavor.Protocol ? PgRequestKind.Parse : PgRequestKind.Query, mode,
                Unit: unit, Op: PgStatementOp.Prepare, Statement: statement, ClientStatement: registering);
            _queue.Enqueue(request);
            if (statement.Flavor == PgStatementFlavor.Protocol)
            {
                Output.Write(statement.ParseMessage);
                if (mode == PgResponseMode.Forward)
                    _clientUnsynced = true;
                wroteExtended = true;
            }
            else
            {
                if (wroteExtended && sync)
                    WriteSyncLocked();
                wroteExtended = false;
                PgMessageWriter.WriteQuery(Output, statement.PrepareSql!);
            }
            if (wroteExtended && sync)
                WriteSyncLocked();
            return false;
        }
    }

    /// <summary>Closes a statement on the server (a Close message deallocates SQL-level statements too).</summary>
    private void WriteCloseLocked(PgStatement statement, int generation)
    {
        Statements.Remove(statement);
        _queue.Enqueue(new PgPendingRequest(PgRequestKind.Close, PgResponseMode.Swallow, Op: PgStatementOp.Close, Statement: statement, Generation: generation));
        Output.Write(statement.CloseMessage);
    }

    /// <summary>Before the client's own PREPARE of <paramref name="statement"/>: closes a copy already on this connection.</summary>
    public void ClosePreparedIfPresent(PgStatement statement, bool sync)
    {
        lock (_sync)
        {
            if (Statements.GenerationOf(statement) is not { } generation)
                return;
            WriteCloseLocked(statement, generation);
            if (sync)
                WriteSyncLocked();
        }
    }

    /// <summary>The client's request about to be written prepares <paramref name="statement"/> here (undone if it fails).</summary>
    public void NotePreparedBy(PgStatement statement, bool sync)
    {
        lock (_sync)
        {
            if (Statements.EvictionCandidate(statement) is { } evicted)
            {
                WriteCloseLocked(evicted, Statements.GenerationOf(evicted) ?? 0);
                if (sync)
                    WriteSyncLocked();
            }
            Statements.Add(statement);
        }
    }

    private void WriteSyncLocked()
    {
        _queue.Enqueue(new PgPendingRequest(PgRequestKind.Sync, PgResponseMode.Swallow));
        PgMessageWriter.WriteSync(Output);
    }

    /// <summary>The client's request will leave the connection without prepared statements (DISCARD ALL, DEALLOCATE ALL).</summary>
    public void ForgetPreparedStatements()
    {
        lock (_sync)
            Statements.Clear();
    }

    /// <summary>The client's SQL DEALLOCATE of the statement is about to run here.</summary>
    public void ForgetPreparedStatement(PgStatement statement)
    {
        lock (_sync)
            Statements.Remove(statement);
    }

    /// <summary>
    /// Queues the edge's own response to the attached client (an error for a refused request), to be
    /// emitted in order once every response before it has been relayed; with
    /// <paramref name="readyForQuery"/>, followed by ReadyForQuery with the server's status then.
    /// </summary>
    public void EnqueueSynthetic(byte[] bytes, bool readyForQuery, int unit)
    {
        bool atHead;
        lock (_sync)
        {
            _queue.Enqueue(new PgPendingRequest(PgRequestKind.Synthetic, PgResponseMode.Forward, Unit: unit, Synthetic: bytes, SyntheticReadyForQuery: readyForQuery));
            atHead = _queue.Count == 1;
        }
        // Nothing in flight before it: the pump may be waiting for server data that will never come; wake it.
        if (atHead)
            _input.CancelPendingRead();
    }

    /// <summary>
    /// The edge is cancelling the running request (a runaway rule): when the server answers with
    /// 57014, the client gets <paramref name="errorResponse"/> instead, which says why.
    /// </summary>
    public void SetCancelReplacement(byte[] errorResponse)
    {
        lock (_sync)
            _cancelReplacement = errorResponse;
    }

    /// <summary>The resource group whose server settings (and statement timeout) were last applied to this connection.</summary>
    public MProxy.Edge.Qos.AppliedGroupSettings GroupSettings { get; } = new();

    /// <summary>
    /// The client is leaving: roll back what it left open, reset in session mode, then return the
    /// connection to the pool — or close it when a request of the client's is still running.
    /// </summary>
    public void DetachClient(PgClientSession client)
    {
        bool pending;
        PgTransactionStatus status;
        lock (_sync)
        {
            if (!ReferenceEquals(_client, client))
                return; // already back in the pool
            _client = null;
            _writerBusy = false;
            pending = _queue.Count > 0 || _clientUnsynced;
            status = _status;
            if (_state == ServerConnectionState.Attached)
                _state = ServerConnectionState.Idle;
        }
        if (IsBroken)
        {
            _pool.Return(this);
        }
        else if (pending)
        {
            _ = _pool.CancelAsync(this);
            _pool.Discard(this, "its client left while a request was running");
        }
        else if (status != PgTransactionStatus.Idle || _pool.Mode == PoolMode.Session)
        {
            _ = _pool.CleanAndReturnAsync(this, rollback: status != PgTransactionStatus.Idle);
        }
        else
        {
            _pool.Return(this);
        }
    }

    // ---------------------------------------------------------------- edge's own requests

    /// <summary>Runs a simple query for the edge (check, rollback, reset); returns the server's error message or null.</summary>
    public async Task<string?> RunInternalAsync(string sql, CancellationToken cancellationToken)
    {
        var request = new PgInternalRequest();
        lock (_sync)
        {
            if (_state == ServerConnectionState.Broken)
                throw new IOException("the server connection is closed");
            _queue.Enqueue(new PgPendingRequest(PgRequestKind.Query, PgResponseMode.Swallow, request));
        }
        PgMessageWriter.WriteQuery(Output, sql);
        await Output.FlushAsync(cancellationToken);
        return await request.Task.WaitAsync(cancellationToken);
    }

    /// <summary>After the edge's reset: the unreported tracked parameters and the group settings are back at the server's defaults.</summary>
    public void ForgetUnreportedParameters()
    {
        for (var i = 0; i < Tracked.Length; i++)
            if (!PgTrackedParameters.IsReported(i))
                Tracked[i] = null;
        GroupSettings.Forget();
        lock (_sync)
            Statements.Clear();
    }

    protected override void WriteGoodbye(PipeWriter output) => PgMessageWriter.WriteTerminate(output);

    // ---------------------------------------------------------------- the pump

    /// <summary>
    /// Handles every whole message in <paramref name="buffer"/> (and the available part of a large
    /// forwarded one), emitting the edge's own responses where they fall due; returns how far it consumed.
    /// </summary>
    protected override SequencePosition ProcessLocked(in ReadOnlySequence<byte> buffer, PgClientSession? client, ref bool wrote)
    {
        var output = client?.WritableOutput;
        var cursor = buffer;
        if (_bodyRemaining > 0)
        {
            var take = Math.Min(_bodyRemaining, cursor.Length);
            if (_bodyForward && output is not null)
            {
                output.WriteSequence(cursor.Slice(0, take));
                _forwardedBytes += take;
                wrote = true;
            }
            _bodyRemaining -= take;
            cursor = cursor.Slice(take);
            if (_bodyRemaining > 0)
                return cursor.Start;
        }
        EmitSyntheticLocked(output, ref wrote);

        var maxMessage = _pool.MaxMessageBytes;
        var inRun = false;
        SequencePosition runStart = default;
        while (PgFrame.TryReadHeader(cursor, maxMessage, out var code, out var payloadLength))
        {
            var total = PgFrame.HeaderLength + (long)payloadLength;
            var whole = cursor.Length >= total;
            if (!whole && NeedsWholeMessage(code))
                break;
            var disposition = whole
                ? HandleMessage(code, cursor.Slice(PgFrame.HeaderLength, payloadLength), client)
                : HandleMessageHeader(code, client);
            var forward = disposition == Disposition.Forward && output is not null;

            if (forward && !inRun)
            {
                runStart = cursor.Start;
                inRun = true;
            }
            else if (!forward)
            {
                if (inRun)
                {
                    FlushRun(output!, buffer.Slice(runStart, cursor.Start), ref wrote);
                    inRun = false;
                }
                if (disposition == Disposition.Replace && output is not null)
                {
                    output.Write(_replacement);
                    wrote = true;
                }
            }

            if (!whole)
            {
                // Stream the rest of a large message as it arrives instead of buffering it whole.
                _bodyRemaining = total - cursor.Length;
                _bodyForward = forward;
                if (inRun)
                    FlushRun(output!, buffer.Slice(runStart, cursor.End), ref wrote);
                return cursor.End;
            }
            cursor = cursor.Slice(total);
            if (_queue.Count > 0 && _queue.Head.Kind == PgRequestKind.Synthetic)
            {
                if (inRun)
                {
                    FlushRun(output!, buffer.Slice(runStart, cursor.Start), ref wrote);
                    inRun = false;
                }
                EmitSyntheticLocked(output, ref wrote);
            }
        }
        if (inRun)
            FlushRun(output!, buffer.Slice(runStart, cursor.Start), ref wrote);
        return cursor.Start;
    }

    /// <summary>Emits the edge's own responses now at the head of the queue.</summary>
    private void EmitSyntheticLocked(PipeWriter? output, ref bool wrote)
    {
        // After a server error the server skips to Sync; so do the edge's responses queued before it.
        while (!_skipUntilSync && _queue.Count > 0 && _queue.Head.Kind == PgRequestKind.Synthetic)
        {
            var request = _queue.Dequeue();
            if (request.Unit != 0)
                _completedUnit = Math.Max(_completedUnit, request.Unit);
            if (output is null)
                continue;
            output.Write(request.Synthetic);
            if (request.SyntheticReadyForQuery)
                PgMessageWriter.WriteReadyForQuery(output, _status);
            wrote = true;
        }
    }

    private enum Disposition
    {
        Drop,
        Forward,

        /// <summary>Send <see cref="_replacement"/> instead of the message.</summary>
        Replace,
    }

    private byte[] _replacement = [];

    private bool NeedsWholeMessage(byte code) =>
        code is (byte)PgBackendCode.ReadyForQuery or (byte)PgBackendCode.ErrorResponse or (byte)PgBackendCode.ParameterStatus
        || (code == (byte)PgBackendCode.DataRow && _queue.Count > 0 && _queue.Head.Internal?.OnValue is not null);

    private static Disposition ForwardIf(bool forward) => forward ? Disposition.Forward : Disposition.Drop;

    /// <summary>Updates the queue and status for one whole message; returns what becomes of it.</summary>
    private Disposition HandleMessage(byte code, in ReadOnlySequence<byte> payload, PgClientSession? client)
    {
        switch ((PgBackendCode)code)
        {
            case PgBackendCode.ReadyForQuery:
                {
                    if (payload.Length != 1)
                        PgProtocolException.Throw("ReadyForQuery of the wrong length");
                    _status = (PgTransactionStatus)payload.FirstSpan[0];
                    // Requests the server skipped after an error are answered by nothing.
                    while (_queue.Count > 0 && !_queue.Head.EndsWithReadyForQuery)
                        Skipped(_queue.Dequeue(), client);
                    if (_queue.Count == 0)
                        PgProtocolException.Throw("ReadyForQuery with no request pending");
                    _skipUntilSync = false;
                    var request = _queue.Dequeue();
                    request.Internal?.Complete();
                    if (request.Unit != 0)
                    {
                        _completedUnit = Math.Max(_completedUnit, request.Unit);
                        _cancelReplacement = null;
                    }
                    return ForwardIf(request.Mode == PgResponseMode.Forward && client is not null);
                }
            case PgBackendCode.ErrorResponse:
                {
                    var fields = PgErrorFields.Parse(payload);
                    if (_queue.Count == 0)
                    {
                        // An error nobody asked for: the server is terminating the connection.
                        PgLog.ServerAsyncError(_log, Id, fields.SqlState, fields.Message);
                        if (fields.IsFatal)
                            _state = ServerConnectionState.Broken;
                        return ForwardIf(client is not null);
                    }
                    var head = _queue.Head;
                    if (head.Internal is not null)
                        head.Internal.Error = fields.Message;
                    else if (head.Mode is not (PgResponseMode.Forward or PgResponseMode.SwallowSuccess))
                        PgLog.InternalRequestFailed(_log, Id, fields.SqlState, fields.Message);
                    if (head.Op == PgStatementOp.Prepare)
                        Unprepared(head, client);
                    else if (head.Op == PgStatementOp.Use && fields.SqlState == PgSqlState.FeatureNotSupported
                             && fields.Message.Contains("cached plan must not change result type", StringComparison.Ordinal))
                        head.Statement!.Invalidate(); // every connection re-prepares it before its next use
                    else if (head.Op == PgStatementOp.Use && fields.SqlState == "26000")
                        Statements.Remove(head.Statement!); // not there after all: prepare it again next time
                    if (head.IsExtended)
                    {
                        _queue.Dequeue();
                        _skipUntilSync = true;
                    }
                    if (fields.IsFatal)
                        _state = ServerConnectionState.Broken;
                    if (fields.SqlState == PgSqlState.QueryCanceled && _cancelReplacement is { } replacement && head.Mode == PgResponseMode.Forward && client is not null)
                    {
                        _replacement = replacement;
                        _cancelReplacement = null;
                        return Disposition.Replace;
                    }
                    return ForwardIf(head.Mode is PgResponseMode.Forward or PgResponseMode.SwallowSuccess && client is not null);
                }
            case PgBackendCode.ParameterStatus:
                {
                    var array = PgMessageReader.RentPayload(payload, out var length);
                    try
                    {
                        var reader = new PgMessageReader(array.AsSpan(0, length));
                        return ForwardIf(HandleParameterStatus(reader.ReadCString(), reader.ReadCString(), client));
                    }
                    finally
                    {
                        PgMessageReader.ReturnPayload(array);
                    }
                }
            case PgBackendCode.DataRow when _queue.Count > 0 && _queue.Head.Internal is { OnValue: not null } capture && capture.Value is null:
                {
                    // The first column of the first row of the edge's own query.
                    var array = PgMessageReader.RentPayload(payload, out var length);
                    try
                    {
                        var reader = new PgMessageReader(array.AsSpan(0, length));
                        if (reader.ReadInt16() > 0 && reader.ReadInt32() is var size and >= 0)
                            capture.Value = System.Text.Encoding.UTF8.GetString(reader.ReadBytes(size));
                    }
                    finally
                    {
                        PgMessageReader.ReturnPayload(array);
                    }
                    return Disposition.Drop;
                }
            default:
                return HandleMessageHeader(code, client);
        }
    }

    /// <summary>Handles a message whose payload the edge does not need (it may not be buffered whole).</summary>
    private Disposition HandleMessageHeader(byte code, PgClientSession? client)
    {
        switch ((PgBackendCode)code)
        {
            case PgBackendCode.NoticeResponse:
                return ForwardIf(client is not null && (_queue.Count == 0 || _queue.Head.Mode == PgResponseMode.Forward));
            case PgBackendCode.NotificationResponse:
                return ForwardIf(client is not null);
        }
        if (_queue.Count == 0 || _skipUntilSync || _queue.Head.Kind == PgRequestKind.Synthetic)
            PgProtocolException.Throw($"unexpected message '{(char)code}' from the server");
        var head = _queue.Head;
        if (head.IsCompletedBy(code))
        {
            _queue.Dequeue();
            if (head.Op == PgStatementOp.Prepare && code == (byte)PgBackendCode.ParseComplete)
                head.Statement!.MarkValidated();
        }
        return ForwardIf(head.Mode == PgResponseMode.Forward && client is not null);
    }

    /// <summary>A request the server skipped after an earlier error: undo what the edge assumed it would do.</summary>
    private void Skipped(in PgPendingRequest request, PgClientSession? client)
    {
        if (request.Op == PgStatementOp.Prepare)
            Unprepared(request, client);
        else if (request.Op == PgStatementOp.Close)
            Statements.Restore(request.Statement!, request.Generation);
    }

    /// <summary>A prepare failed or was skipped: the statement is not on this connection, and a client's name for it is void.</summary>
    private void Unprepared(in PgPendingRequest request, PgClientSession? client)
    {
        Statements.Remove(request.Statement!);
        if (request.ClientStatement is { } registered)
            client?.ForgetStatement(registered);
    }

    private bool HandleParameterStatus(string name, string value, PgClientSession? client)
    {
        var index = PgTrackedParameters.IndexOf(name);
        if (index >= 0)
            Tracked[index] = value = PgTrackedParameters.Share(value);
        var mode = _queue.Count > 0 ? _queue.Head.Mode : PgResponseMode.Forward;
        if (client is null || mode == PgResponseMode.Swallow)
            return false;
        // The client's own SET, or the edge's SET of the client's value: either way the server's
        // spelling is now the client's value too.
        if (index >= 0)
            client.Tracked[index] = value;
        return mode == PgResponseMode.Forward;
    }

    protected override bool IsUnitOverLocked() =>
        _pool.Mode == PoolMode.Transaction
        && _queue.Count == 0
        && !_clientUnsynced
        && _status == PgTransactionStatus.Idle;

    protected override void ReturnToPool() => _pool.Return(this);

    protected override bool IsMidMessage => _bodyRemaining > 0;

    protected override void OnBrokenLocked(Exception? failure, bool first)
    {
        _queue.Clear(failure ?? new IOException("the server connection closed"));
        if (first && failure is not null)
            PgLog.ServerConnectionFailed(_log, Id, Endpoint.ToString(), failure.Message);
    }
}
