using System.Buffers;
using System.IO.Pipelines;
using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.Logging;
using MProxy.Edge.Configuration;
using MProxy.Edge.Networking;
using MProxy.Edge.Pooling;

namespace MProxy.Edge.Protocols.MySql;

/// <summary>
/// One authenticated connection from the edge to a MySQL or MariaDB server.
/// </summary>
/// <remarks>
/// <para>A single read loop (the pump) runs for the connection's whole life. It follows each
/// response packet by packet (<see cref="MySqlResponseTracker"/>, from the first bytes of each
/// packet), forwards responses to the attached client segment by segment (large rows stream
/// without being buffered whole), swallows the responses to the edge's own commands, rewrites the
/// statement id of a client's PREPARE_OK, and keeps the server status flags of every OK and EOF.</para>
/// <para>The attached client's loop is the only writer of <c>Output</c>, between
/// <see cref="RelayServerConnection{TClient}.TryBeginWrite"/> and <see cref="RelayServerConnection{TClient}.EndWrite"/>. In transaction mode the connection goes
/// back to the pool when nothing is pending, no transaction is open (SERVER_STATUS_IN_TRANS clear,
/// autocommit on) and the client has not pinned it with session state — whichever of the pump or
/// the client's loop observes that last does it.</para>
/// </remarks>
internal sealed class MySqlServerConnection : RelayServerConnection<MySqlClientSession>, IPooledConnection, IInventoriedServer
{
    private static long s_nextId;

    private readonly MySqlPool _pool;
    private readonly MySqlRequestQueue _queue = new();
    private readonly ILogger _log;
    private readonly Dictionary<string, MySqlServerStatement> _statements = new(StringComparer.Ordinal);
    private readonly List<uint> _pendingCloses = [];
    private MySqlResponseTracker _tracker;
    private MySqlServerStatus _status;
    private bool _unitOpen;         // the client sent long data for an execution it has not sent yet
    private bool _pinned;           // the client holds session state here: keep it attached
    private bool _infile;           // a LOCAL INFILE transfer is in progress
    private bool _continuation;     // the next packet continues a split message
    private bool _continuationForward;
    private long _bodyRemaining;    // bytes of the current packet not read yet
    private bool _bodyForward;
    private string? _cancelReplacement; // the edge cancelled the running command: answer this instead of the server's 1317

    public MySqlServerConnection(MySqlPool pool, ConnectionContext transport, MySqlServerHandshake handshake, HostPort endpoint, long openedAt, ILogger log)
        : base(transport, endpoint)
    {
        Id = Interlocked.Increment(ref s_nextId);
        _pool = pool;
        _log = log;
        OpenedAt = openedAt;
        IdleSince = openedAt;
        ConnectionId = handshake.ConnectionId;
        IsMariaDb = handshake.ServerVersion.Contains("MariaDB", StringComparison.OrdinalIgnoreCase);
        _status = handshake.Status | MySqlServerStatus.Autocommit;
    }

    public long Id { get; }

    public long OpenedAt { get; }

    public long IdleSince { get; set; }

    /// <summary>The server's thread id for this connection (what KILL QUERY names).</summary>
    public uint ConnectionId { get; }

    public MySqlServerStatus Status => _status;

    string IInventoriedServer.Transaction => (_status & MySqlServerStatus.InTransaction) != 0 ? "in-transaction" : "idle";

    int? IInventoriedServer.ClientId => Client?.ProcessId;

    /// <summary>MariaDB (its version string says so) rather than MySQL: they name the statement timeout differently.</summary>
    public bool IsMariaDb { get; }

    /// <summary>The resource group whose server settings (and statement timeout) were last written to this connection; a reset forgets them.</summary>
    public MProxy.Edge.Qos.AppliedGroupSettings GroupSettings { get; } = new();

    /// <summary>The tracked session variables in force on this connection (the edge's view).</summary>
    public MySqlSessionVariables Variables { get; private set; } = MySqlSessionVariables.Default;

    /// <summary>The client this connection serves now, if any (for SHOW SERVERS).</summary>
    /// <summary>Statements prepared on this connection (for SHOW SERVERS; read without the connection's lock).</summary>
    public int PreparedStatementCount => _statements.Count;

    /// <summary>The pool (and so the host) this connection belongs to.</summary>
    public MySqlPool Pool => _pool;

    /// <summary>
    /// Behind the client's unit that wrote on the primary: the primary's GTID position, which becomes
    /// the client's read-your-writes token (<see cref="MySqlBackendProbe.GtidSequence"/>). Called by
    /// the client's loop while it holds the connection for writing; the connection stays attached
    /// until the answer is in, so the client's next unit runs after the token is set.
    /// </summary>
    public void EnqueueCausalPositionQuery(Action<byte[]> onRow)
    {
        Enqueue(new MySqlPendingRequest(MySqlResponseKind.ResultSet, MySqlResponseMode.Swallow, Internal: new MySqlInternalRequest { OnRow = onRow }));
        MySqlPacketWriter.WriteQuery(Output, CausalPositionQuery);
    }

    /// <summary>The domain and the binary log position of the primary (global variables: no privilege needed).</summary>
    public const string CausalPositionQuery = "SELECT @@global.gtid_domain_id, @@global.gtid_binlog_pos";

    // ---------------------------------------------------------------- client side

    /// <summary>Attaches a freshly leased connection to a client, which then holds it for writing.</summary>
    public void Attach(MySqlClientSession client)
    {
        lock (_sync)
        {
            _client = client;
            _state = ServerConnectionState.Attached;
            _writerBusy = true;
            _unitOpen = false;
            _pinned = false;
        }
    }

    /// <summary>Records a command the client (or the edge) is about to write to <c>Output</c>.</summary>
    public void Enqueue(in MySqlPendingRequest request)
    {
        if (request.Resets)
            GroupSettings.Forget(); // whatever is written after the reset finds the server's defaults
        lock (_sync)
        {
            _queue.Enqueue(request);
            if (_queue.Count == 1)
                _tracker.Begin(request.Kind);
        }
    }

    /// <summary>Queues the edge's own response to the attached client, emitted once every response before it has been relayed.</summary>
    public void EnqueueSynthetic(byte[] packets, int unit)
    {
        Enqueue(new MySqlPendingRequest(MySqlResponseKind.Single, MySqlResponseMode.Synthetic, Unit: unit, Synthetic: packets));
        // The pump may be waiting for server data that will never come: wake it to emit this.
        _input.CancelPendingRead();
    }

    /// <summary>The client keeps session state on this connection: it stays attached until the client resets or leaves.</summary>
    public void Pin()
    {
        lock (_sync)
            _pinned = true;
    }

    public bool IsPinned
    {
        get
        {
            lock (_sync)
                return _pinned;
        }
    }

    /// <summary>Long data was sent for an execution still to come: hold the connection until it is sent.</summary>
    public void SetUnitOpen(bool open)
    {
        lock (_sync)
            _unitOpen = open;
    }

    /// <summary>The edge is cancelling the running command (a runaway rule): when the server answers 1317, the client gets this message instead.</summary>
    public void SetCancelReplacement(string message)
    {
        lock (_sync)
            _cancelReplacement = message;
    }

    /// <summary>This connection's statement for <paramref name="key"/>, if it has one.</summary>
    public MySqlServerStatement? FindStatement(string key)
    {
        lock (_sync)
            return _statements.GetValueOrDefault(key);
    }

    /// <summary>Writes COM_STMT_CLOSE for server statements replaced or evicted meanwhile (no response). Called by the writer.</summary>
    public void WritePendingCloses()
    {
        lock (_sync)
        {
            foreach (var id in _pendingCloses)
                MySqlPacketWriter.WriteStatementClose(Output, id);
            _pendingCloses.Clear();
        }
    }

    /// <summary>
    /// The client is leaving (or changing user): a command still running closes the connection; an
    /// open transaction, autocommit off, or pinned session state is reset with COM_RESET_CONNECTION;
    /// otherwise the connection goes straight back to the pool.
    /// </summary>
    public void DetachClient(MySqlClientSession client)
    {
        bool pending, reset;
        lock (_sync)
        {
            if (!ReferenceEquals(_client, client))
                return; // already back in the pool
            _client = null;
            _writerBusy = false;
            pending = _queue.Count > 0 || _unitOpen || _infile;
            reset = _pinned || (_status & MySqlServerStatus.InTransaction) != 0 || (_status & MySqlServerStatus.Autocommit) == 0 || _pool.Mode == PoolMode.Session;
            _pinned = false;
            _unitOpen = false;
            if (_state == ServerConnectionState.Attached)
                _state = ServerConnectionState.Idle;
        }
        if (IsBroken)
            _pool.Return(this);
        else if (pending)
            _pool.Discard(this, "its client left while a command was running");
        else if (reset)
            _ = _pool.ResetAndReturnAsync(this);
        else
            _pool.Return(this);
    }

    // ---------------------------------------------------------------- edge's own commands

    /// <summary>Sends a command for the edge while no client writes (check, reset); returns the server's error message or null.</summary>
    public async Task<string?> RunInternalAsync(MySqlCommandCode command, MySqlResponseKind kind, ReadOnlyMemory<byte> argument, bool resets, CancellationToken cancellationToken)
    {
        var request = new MySqlInternalRequest();
        if (resets)
            GroupSettings.Forget();
        lock (_sync)
        {
            if (_state == ServerConnectionState.Broken)
                throw new IOException("the server connection is closed");
            _queue.Enqueue(new MySqlPendingRequest(kind, MySqlResponseMode.Swallow, Internal: request, Resets: resets));
            if (_queue.Count == 1)
                _tracker.Begin(kind);
            MySqlPacketWriter.WriteCommand(Output, command, argument.Span);
        }
        await Output.FlushAsync(cancellationToken);
        return (await request.Task.WaitAsync(cancellationToken)).Error;
    }

    protected override void WriteGoodbye(PipeWriter output) => MySqlPacketWriter.WriteCommand(output, MySqlCommandCode.Quit);

    // ---------------------------------------------------------------- the pump

    private enum Disposition
    {
        Drop,
        Forward,

        /// <summary>The edge writes its own packet instead (a rewritten PREPARE_OK, a cancel's ERR).</summary>
        Replaced,
    }

    /// <summary>Handles every packet in <paramref name="buffer"/> (streaming the available part of a large one); returns how far it consumed.</summary>
    protected override SequencePosition ProcessLocked(in ReadOnlySequence<byte> buffer, MySqlClientSession? client, ref bool wrote)
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

        var inRun = false;
        SequencePosition runStart = default;
        Span<byte> prefix = stackalloc byte[MySqlResponseTracker.PrefixLength];
        while (MySqlFrame.TryReadHeader(cursor, out var length, out var sequence))
        {
            var total = MySqlFrame.HeaderLength + (long)length;
            Disposition disposition;
            if (_continuation)
            {
                disposition = _continuationForward ? Disposition.Forward : Disposition.Drop;
            }
            else
            {
                var need = Math.Min(length, MySqlResponseTracker.PrefixLength);
                if (cursor.Length < MySqlFrame.HeaderLength + need)
                    break;
                var head = prefix[..need];
                cursor.Slice(MySqlFrame.HeaderLength, need).CopyTo(head);
                // An ERR is small; read it whole for its message. So are the rows the edge reads for itself.
                if (need > 0 && cursor.Length < total && (head[0] == MySqlResponseHeader.Err || (_queue.Count > 0 && _queue.Head.Internal?.OnRow is not null)))
                    break;
                disposition = HandlePacket(head, length, sequence, cursor.Slice(MySqlFrame.HeaderLength, Math.Min(length, cursor.Length - MySqlFrame.HeaderLength)), client, output);
            }
            _continuation = length == MySqlFrame.MaxPacketPayload;
            if (!_continuation)
                _continuationForward = false;
            else if (disposition == Disposition.Forward)
                _continuationForward = true;

            var forward = disposition == Disposition.Forward && output is not null;
            if (forward && !inRun)
            {
                runStart = cursor.Start;
                inRun = true;
            }
            else if (!forward && inRun)
            {
                FlushRun(output!, buffer.Slice(runStart, cursor.Start), ref wrote);
                inRun = false;
            }
            if (disposition == Disposition.Replaced && output is not null)
            {
                WriteReplacement(output, prefix[..Math.Min(length, MySqlResponseTracker.PrefixLength)], sequence);
                wrote = true;
            }

            if (cursor.Length < total)
            {
                // Stream the rest of a large packet as it arrives instead of buffering it whole.
                _bodyRemaining = total - cursor.Length;
                _bodyForward = forward;
                if (inRun)
                    FlushRun(output!, buffer.Slice(runStart, cursor.End), ref wrote);
                return cursor.End;
            }
            cursor = cursor.Slice(total);
            if (_queue.Count > 0 && _queue.Head.Mode == MySqlResponseMode.Synthetic)
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

    /// <summary>Updates the queue, status and statements for the first packet of a response message; says what becomes of it.</summary>
    private Disposition HandlePacket(ReadOnlySpan<byte> prefix, int length, byte sequence, in ReadOnlySequence<byte> payload, MySqlClientSession? client, PipeWriter? output)
    {
        if (_queue.Count == 0 || _queue.Head.Mode == MySqlResponseMode.Synthetic)
        {
            if (prefix.Length > 0 && prefix[0] == MySqlResponseHeader.Err)
            {
                // An error nobody asked for: the server is closing the connection (idle timeout, KILL).
                var (code, _, message) = MySqlServerLogin.ParseError(Contiguous(payload));
                MySqlLog.ServerAsyncError(_log, Id, code, message);
                _state = ServerConnectionState.Broken;
                return Disposition.Drop;
            }
            MySqlProtocolException.Throw($"unexpected packet 0x{(prefix.Length > 0 ? prefix[0] : 0):X2} from the server with no command pending");
        }
        var head = _queue.Head;
        var step = _tracker.Feed(prefix, length);
        var toClient = head.Mode == MySqlResponseMode.Forward && client is not null;
        var disposition = toClient ? Disposition.Forward : Disposition.Drop;
        if (step.HasStatus)
            _status = step.Status;
        if (step.IsInfileRequest)
        {
            _infile = true;
            if (toClient)
                client!.OnInfileRequested();
        }
        if (step.IsPrepareOk)
        {
            if (head.Internal is not null)
            {
                head.Internal.Result = new MySqlInternalResult(null, step.StatementId, step.Parameters);
                AddStatementLocked(head.StatementKey!, new MySqlServerStatement(step.StatementId, step.Parameters));
            }
            else if (head.Statement is { } statement)
            {
                statement.Parameters = step.Parameters;
                statement.Columns = step.Columns;
                AddStatementLocked(statement.Key, new MySqlServerStatement(step.StatementId, step.Parameters));
                statement.State = MySqlStatementState.Prepared;
                if (toClient && output is not null)
                {
                    // The client sees the edge's id for the statement, not this connection's.
                    if (prefix.Length != length)
                        MySqlProtocolException.Throw("PREPARE_OK of unexpected length");
                    _replacementStatementId = statement.Id;
                    _replacementMessage = null;
                    disposition = Disposition.Replaced;
                }
            }
        }
        if (step.IsRow && head.Internal?.OnRow is { } onRow)
            onRow(Contiguous(payload).ToArray());
        if (step.IsError)
        {
            var (code, _, message) = MySqlServerLogin.ParseError(Contiguous(payload));
            if (head.Internal is not null)
                head.Internal.Result = new MySqlInternalResult(message, 0, 0);
            else if (head.Mode == MySqlResponseMode.Swallow)
                MySqlLog.InternalRequestFailed(_log, Id, code, message);
            if (head.Statement is { } failed)
                failed.State = MySqlStatementState.Failed;
            if (code == MySqlError.ServerQueryInterrupted && _cancelReplacement is { } replacement && toClient && output is not null)
            {
                _cancelReplacement = null;
                _replacementMessage = replacement;
                disposition = Disposition.Replaced;
            }
        }
        if (step.Complete)
        {
            var request = _queue.Dequeue();
            _infile = false;
            if (!step.IsError)
            {
                if (request.Variables is { } variables)
                {
                    Variables = variables;
                    if (request.Mode == MySqlResponseMode.Forward)
                        client?.OnVariablesApplied(variables);
                }
                if (request.Resets)
                {
                    ForgetSessionLocked();
                    _pinned = false;
                }
            }
            request.Internal?.Complete();
            if (request.Unit != 0)
            {
                _completedUnit = Math.Max(_completedUnit, request.Unit);
                _cancelReplacement = null;
            }
            if (_queue.Count > 0)
                _tracker.Begin(_queue.Head.Kind);
        }
        return disposition;
    }

    private uint _replacementStatementId;
    private string? _replacementMessage;

    /// <summary>Writes the edge's packet in place of the server's: the cancel's ERR, or the PREPARE_OK with the client's statement id.</summary>
    private void WriteReplacement(PipeWriter output, ReadOnlySpan<byte> prefix, byte sequence)
    {
        if (_replacementMessage is { } message)
        {
            MySqlPacketWriter.WriteError(output, sequence, MySqlError.QueryInterrupted, message);
            _replacementMessage = null;
            return;
        }
        var span = output.GetSpan(MySqlFrame.HeaderLength + prefix.Length);
        MySqlFrame.WriteHeader(span, prefix.Length, sequence);
        prefix.CopyTo(span[MySqlFrame.HeaderLength..]);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(span[(MySqlFrame.HeaderLength + 1)..], _replacementStatementId);
        output.Advance(MySqlFrame.HeaderLength + prefix.Length);
        _forwardedBytes += MySqlFrame.HeaderLength + prefix.Length;
    }

    /// <summary>Changes whenever a cached server statement is replaced, evicted or reset away: a client's cached lookup is valid while it matches.</summary>
    public int StatementsGeneration => Volatile.Read(ref _statementsGeneration);

    private int _statementsGeneration;

    private void AddStatementLocked(string key, MySqlServerStatement statement)
    {
        if (_statements.Remove(key, out var previous))
        {
            _pendingCloses.Add(previous.ServerId);
            Interlocked.Increment(ref _statementsGeneration);
        }
        else if (_statements.Count >= MaxStatementsPerConnection)
        {
            // Bounded: drop an arbitrary cached statement; a client that needs it again re-prepares it.
            foreach (var (oldKey, old) in _statements)
            {
                _statements.Remove(oldKey);
                _pendingCloses.Add(old.ServerId);
                Interlocked.Increment(ref _statementsGeneration);
                break;
            }
        }
        _statements[key] = statement;
    }

    private const int MaxStatementsPerConnection = 1024;

    /// <summary>After COM_RESET_CONNECTION: no statements, default variables.</summary>
    private void ForgetSessionLocked()
    {
        _statements.Clear();
        _pendingCloses.Clear();
        Interlocked.Increment(ref _statementsGeneration);
        Variables = MySqlSessionVariables.Default;
    }

    private static ReadOnlySpan<byte> Contiguous(in ReadOnlySequence<byte> payload) =>
        payload.IsSingleSegment ? payload.FirstSpan : payload.ToArray();

    /// <summary>Emits the edge's own responses now at the head of the queue.</summary>
    private void EmitSyntheticLocked(PipeWriter? output, ref bool wrote)
    {
        while (_queue.Count > 0 && _queue.Head.Mode == MySqlResponseMode.Synthetic && !_continuation)
        {
            var request = _queue.Dequeue();
            if (request.Unit != 0)
                _completedUnit = Math.Max(_completedUnit, request.Unit);
            if (_queue.Count > 0)
                _tracker.Begin(_queue.Head.Kind);
            if (output is null)
                continue;
            output.Write(request.Synthetic);
            wrote = true;
        }
    }

    protected override bool IsUnitOverLocked() =>
        _pool.Mode == PoolMode.Transaction
        && _queue.Count == 0
        && !_unitOpen
        && !_pinned
        && !_infile
        && (_status & MySqlServerStatus.InTransaction) == 0
        && (_status & MySqlServerStatus.Autocommit) != 0;

    protected override void ReturnToPool() => _pool.Return(this);

    protected override bool IsMidMessage => _bodyRemaining > 0 || _continuation;

    protected override void OnBrokenLocked(Exception? failure, bool first)
    {
        _queue.Clear(failure ?? new IOException("the server connection closed"));
        if (first && failure is not null)
            MySqlLog.ServerConnectionFailed(_log, Id, Endpoint.ToString(), failure.Message);
    }
}
