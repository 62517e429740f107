using System.Buffers;
using System.IO.Pipelines;
using Microsoft.AspNetCore.Connections;
using MProxy.Edge.Configuration;
using MProxy.Edge.Networking;

namespace MProxy.Edge.Protocols;

/// <summary>The states of a server connection; each protocol's connection changes them in one place each.</summary>
internal enum ServerConnectionState
{
    /// <summary>In the pool, or leased for the edge's own work (check, reset).</summary>
    Idle,

    /// <summary>Attached to a client, whose requests it serves.</summary>
    Attached,

    /// <summary>Closed or failed; never reused.</summary>
    Broken,
}

/// <summary>
/// The protocol-neutral half of a server connection: the pump that relays what the server sends to
/// the attached client. Each batch is framed by the protocol (<see cref="ProcessLocked"/>, under the
/// connection's lock), then the client hears how many bytes and which unit completed
/// (<see cref="RelayClientSession.OnResponses"/>), its output is flushed outside the lock, and the
/// connection goes back to the pool if the client's unit is over (<see cref="IsUnitOverLocked"/>, the
/// protocol's test; <see cref="TryReleaseLocked"/>).
/// When the server goes away the client is told and closed (<see cref="FailAsync"/>). The client's
/// side is the same in both protocols too: it holds the connection for each batch it writes
/// (<see cref="TryBeginWrite"/> … <see cref="EndWrite"/>), which keeps it from going back to the pool
/// mid-batch; and the edge closes a connection with the protocol's goodbye (<see cref="CloseAsync"/>).
/// </summary>
internal abstract class RelayServerConnection<TClient>(ConnectionContext transport, HostPort endpoint)
    where TClient : RelayClientSession
{
    /// <summary>Guards the connection's state; the pump and the client's loop both take it.</summary>
    protected readonly Lock _sync = new();

    /// <summary>The connection to the server.</summary>
    protected readonly ConnectionContext _transport = transport;

    /// <summary>The epoll loop that completes this connection's reads (-1: another transport): the pool's hand-off prefers a client on the same loop.</summary>
    public int Affinity { get; } = Networking.Epoll.EpollTransport.LoopOf(transport);

    /// <summary>What the server sends; read by the pump only.</summary>
    protected readonly PipeReader _input = transport.Transport.Input;

    /// <summary>The client served now, if any.</summary>
    protected TClient? _client;

    /// <summary>Changed under <see cref="_sync"/>; read without it.</summary>
    protected volatile ServerConnectionState _state = ServerConnectionState.Idle;

    /// <summary>The pump is flushing the client's output: the connection cannot go back to the pool yet.</summary>
    protected bool _pumpFlushing;

    /// <summary>The client's loop is writing a batch to <see cref="Output"/>: the connection cannot go back to the pool yet.</summary>
    protected bool _writerBusy;

    /// <summary>Completed when the pump's flush to the client ends (for <see cref="ReleaseBetweenUnitsAsync"/>). Guarded by <see cref="_sync"/>.</summary>
    private TaskCompletionSource? _flushEnded;

    /// <summary>Bytes forwarded to the client by the batch being processed.</summary>
    protected long _forwardedBytes;

    /// <summary>The latest client request unit completed by the batch being processed (0: none).</summary>
    protected int _completedUnit;

    public HostPort Endpoint { get; } = endpoint;

    public ServerConnectionState State => _state;

    public bool IsBroken => _state == ServerConnectionState.Broken;

    /// <summary>What goes to the server (written by the attached client's loop, or the edge while idle).</summary>
    public PipeWriter Output { get; } = transport.Transport.Output;

    /// <summary>Starts relaying the server's messages.</summary>
    public void Start() => _ = PumpAsync();

    /// <summary>The client served now, if any.</summary>
    public TClient? Client => Volatile.Read(ref _client);

    /// <summary>Whether the connection serves <paramref name="client"/> now (read without the lock).</summary>
    public bool IsAttachedTo(TClient client) => ReferenceEquals(Volatile.Read(ref _client), client);

    /// <summary>Starts a batch of writes for the client; false if the connection no longer serves it.</summary>
    public bool TryBeginWrite(TClient client)
    {
        lock (_sync)
        {
            if (!ReferenceEquals(_client, client) || _state != ServerConnectionState.Attached)
                return false;
            _writerBusy = true;
            return true;
        }
    }

    /// <summary>Ends the client's batch (after flushing <see cref="Output"/>); may return the connection to the pool.</summary>
    public void EndWrite(TClient client)
    {
        bool release;
        lock (_sync)
        {
            if (!ReferenceEquals(_client, client))
                return;
            _writerBusy = false;
            release = TryReleaseLocked();
        }
        if (release)
            ReturnToPool();
    }

    /// <summary>Closes the connection for good: says goodbye to the server in its protocol, then closes the socket.</summary>
    public async ValueTask CloseAsync()
    {
        lock (_sync)
        {
            if (_state == ServerConnectionState.Broken)
                return;
            _state = ServerConnectionState.Broken;
        }
        try
        {
            WriteGoodbye(Output);
            await Output.FlushAsync();
        }
        catch
        {
            // the server may already be gone
        }
        await _transport.DisposeAsync();
    }

    /// <summary>The protocol's last message on a connection the edge closes (PostgreSQL's Terminate, MySQL's COM_QUIT).</summary>
    protected abstract void WriteGoodbye(PipeWriter output);

    /// <summary>Forwards a run of the server's bytes to the client's output, counting them. Called under <see cref="_sync"/>.</summary>
    protected void FlushRun(PipeWriter output, in ReadOnlySequence<byte> run, ref bool wrote)
    {
        output.WriteSequence(run);
        _forwardedBytes += run.Length;
        wrote = true;
    }

    /// <summary>
    /// Handles every whole message in <paramref name="buffer"/> (and the available part of a large
    /// forwarded one), writing to <paramref name="client"/>'s output what it must see; returns how
    /// far it consumed. Sets <paramref name="wrote"/> when it wrote to the client. Called under <see cref="_sync"/>.
    /// </summary>
    protected abstract SequencePosition ProcessLocked(in ReadOnlySequence<byte> buffer, TClient? client, ref bool wrote);

    /// <summary>
    /// Detaches the client if the connection may go back to the pool now — its unit is over
    /// (<see cref="IsBetweenUnitsLocked"/>) and neither the client's loop nor the pump is writing —
    /// and frees the client's scheduler slot with it, under this lock: by the time the client's loop
    /// sees the connection gone, the slot is free too. True when it did. Called under <see cref="_sync"/>.
    /// </summary>
    protected bool TryReleaseLocked()
    {
        if (_writerBusy || _pumpFlushing || !IsBetweenUnitsLocked())
            return false;
        _client!.OnTransactionReleased(); // IsBetweenUnitsLocked: a client is attached
        _client = null;
        _state = ServerConnectionState.Idle;
        return true;
    }

    /// <summary>
    /// Whether a client is attached, its last unit is over and the connection would go back to the
    /// pool but for the client's write hold and the pump's flush. Called under <see cref="_sync"/>.
    /// </summary>
    private bool IsBetweenUnitsLocked() =>
        _client is not null && _state == ServerConnectionState.Attached && IsUnitOverLocked();

    /// <summary>
    /// The protocol's part of <see cref="IsBetweenUnitsLocked"/>, asked while a client is attached:
    /// transaction pooling, nothing pending, no transaction open. Called under <see cref="_sync"/>.
    /// </summary>
    protected abstract bool IsUnitOverLocked();

    /// <summary>
    /// The client starts a new unit on the connection it still holds. The pump gives a connection back
    /// only after flushing the last response to the client, so a fast client can send its next
    /// statement before that: the connection is still attached though its unit is over. If so, this
    /// waits for the flush and gives the connection back (true), so that the new unit is routed and
    /// admitted as the new transaction it is, instead of running unrouted, and outside its budget, on
    /// whatever host served the previous one. False (and the client keeps the connection) otherwise:
    /// a transaction or pipelined requests are in progress, or session pooling.
    /// </summary>
    public ValueTask<bool> ReleaseBetweenUnitsAsync(TClient client)
    {
        Task? flushEnded = null;
        lock (_sync)
        {
            if (!ReferenceEquals(_client, client) || !IsBetweenUnitsLocked())
                return new ValueTask<bool>(false);
            if (_pumpFlushing)
                flushEnded = (_flushEnded ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).Task;
        }
        return flushEnded is null ? new ValueTask<bool>(ReleaseHeld(client)) : ReleaseAfterFlushAsync(flushEnded, client);
    }

    private async ValueTask<bool> ReleaseAfterFlushAsync(Task flushEnded, TClient client)
    {
        await flushEnded;
        return ReleaseHeld(client);
    }

    /// <summary>Gives back the connection <paramref name="client"/> holds for writing, if it is between units; true when it did.</summary>
    private bool ReleaseHeld(TClient client)
    {
        bool release;
        lock (_sync)
        {
            if (!ReferenceEquals(_client, client) || !IsBetweenUnitsLocked() || _pumpFlushing)
                return false;
            _writerBusy = false;
            release = TryReleaseLocked();
            if (!release)
                _writerBusy = true;
        }
        if (release)
            ReturnToPool();
        return release;
    }

    /// <summary>Gives the connection back to its pool (after <see cref="TryReleaseLocked"/>).</summary>
    protected abstract void ReturnToPool();

    /// <summary>
    /// The connection just broke: fail what is pending on it, and log <paramref name="failure"/> when
    /// <paramref name="first"/> (it was not closed or broken before). Called under <see cref="_sync"/>.
    /// </summary>
    protected abstract void OnBrokenLocked(Exception? failure, bool first);

    /// <summary>Whether a message to the client was cut in half by the failure (then nothing sensible can be said to it).</summary>
    protected abstract bool IsMidMessage { get; }

    private async Task PumpAsync()
    {
        Exception? failure = null;
        try
        {
            while (true)
            {
                var result = await _input.ReadAsync();
                var buffer = result.Buffer;
                TClient? client;
                bool wrote;
                SequencePosition consumed;
                long forwarded;
                int completedUnit;
                lock (_sync)
                {
                    client = _client;
                    wrote = false;
                    consumed = ProcessLocked(buffer, client, ref wrote);
                    if (wrote)
                        _pumpFlushing = true;
                    forwarded = _forwardedBytes;
                    completedUnit = _completedUnit;
                    _forwardedBytes = 0;
                    _completedUnit = 0;
                }
                _input.AdvanceTo(consumed, buffer.End);

                if (client is not null)
                {
                    if (forwarded > 0 || completedUnit != 0)
                        client.OnResponses(forwarded, completedUnit);
                    if (wrote)
                        await client.FlushOutputAsync();
                    bool release;
                    TaskCompletionSource? flushEnded;
                    lock (_sync)
                    {
                        _pumpFlushing = false;
                        flushEnded = _flushEnded;
                        _flushEnded = null;
                        release = TryReleaseLocked();
                    }
                    flushEnded?.TrySetResult();
                    if (release)
                        ReturnToPool();
                }
                if (result.IsCompleted)
                    throw new IOException("the server closed the connection");
            }
        }
        catch (Exception e)
        {
            failure = e;
        }
        await FailAsync(failure);
    }

    /// <summary>
    /// The server connection is lost: the client's transaction, if any, is gone with it — tell the
    /// client and close it. Its loop then detaches and returns this (broken) connection, which the
    /// pool closes.
    /// </summary>
    private async Task FailAsync(Exception? failure)
    {
        TClient? client;
        TaskCompletionSource? flushEnded;
        lock (_sync)
        {
            client = _client;
            var first = _state != ServerConnectionState.Broken;
            _state = ServerConnectionState.Broken;
            OnBrokenLocked(failure, first);
            flushEnded = _flushEnded;
            _flushEnded = null;
        }
        flushEnded?.TrySetResult(); // a client waiting for the flush finds the connection broken, not between units
        if (client is not null)
            await client.FailFromServerAsync(IsMidMessage, "mproxy: lost the connection to the server " + Endpoint + (failure is null ? "" : ": " + failure.Message));
        try
        {
            await _transport.DisposeAsync();
        }
        catch
        {
            // already closed
        }
    }
}
