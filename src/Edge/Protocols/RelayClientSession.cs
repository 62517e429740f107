using System.Buffers;
using System.IO.Pipelines;
using System.Runtime.CompilerServices;
using MProxy.Edge.Backends;
using MProxy.Edge.Pooling;
using MProxy.Edge.Qos;
using MProxy.Edge.Telemetry;

namespace MProxy.Edge.Protocols;

/// <summary>A pool of one backend host, as the balancer's in-flight bookkeeping sees it.</summary>
internal interface IBackendPool
{
    /// <summary>The database's backends (null: a single server, no balancing).</summary>
    DatabaseBackends? Backends { get; }

    /// <summary>Which of <see cref="Backends"/> this pool's host is.</summary>
    int BackendIndex { get; }
}

/// <summary>
/// What every protocol's client session has in common: the command loop after login
/// (<see cref="CommandLoopAsync"/>, with the protocol's batch handling plugged in), and what it
/// shares with the server connection that relays to it — the client's output (the pump writes
/// responses to it, <see cref="FlushOutputAsync"/> flushes them), the request-unit counter whose
/// completion the pump reports (<see cref="OnResponses"/>: RU and telemetry), and the balancer's count
/// of the client's transaction on its host. The PostgreSQL and MySQL sessions derive from it;
/// <see cref="RelayServerConnection{TClient}"/> calls its public members.
/// </summary>
internal abstract class RelayClientSession(IDuplexPipe client, int loop)
{
    /// <summary>
    /// Runs a session (<paramref name="run"/>) outside its caller's execution context. Kestrel calls
    /// the connection handler inside a logging scope, an AsyncLocal: captured at every await of the
    /// session, it would make each resumption switch execution contexts, a cost on every pooled
    /// statement. The session names its client in its own log lines and needs none of it. It runs in
    /// the default context instead (so every await captures that one, and a resumption on another
    /// session's thread does not inherit that thread's), and it starts inline, on the caller's
    /// thread, up to its first await: handing it to the thread pool cost every new client connection
    /// one more thread wake-up.
    /// </summary>
    public static Task RunWithoutExecutionContext(Func<Task> run)
    {
        Task? session = null;
        ExecutionContext.Run(DefaultContext, _ => session = run(), null);
        return session!;
    }

    /// <summary>The default execution context (no AsyncLocals): captured once on a thread started without the caller's.</summary>
    private static readonly ExecutionContext DefaultContext = CaptureDefaultContext();

    private static ExecutionContext CaptureDefaultContext()
    {
        ExecutionContext? captured = null;
        using (ExecutionContext.SuppressFlow())
        {
            var thread = new Thread(() => captured = ExecutionContext.Capture());
            thread.Start();
            thread.Join();
        }
        return captured!;
    }

    /// <summary>The epoll loop whose thread completes the client's I/O (-1: another transport): the pool hands it a server connection on the same loop when it can.</summary>
    protected int Loop { get; } = loop;

    /// <summary>What the client sends (replaced once, during login, if the client starts TLS).</summary>
    protected PipeReader _input = client.Input;

    /// <summary>What goes to the client: the edge's own answers, and the pump's relayed responses (replaced with <see cref="_input"/>).</summary>
    protected PipeWriter _output = client.Output;

    /// <summary>The edge wrote to the client directly in this batch (flushed before a server's responses can follow).</summary>
    protected bool _outputDirty;

    /// <summary>The proxy is draining: leave at the next read that finds the client between transactions.</summary>
    protected volatile bool _shutdownRequested;

    /// <summary>Close gracefully at the next read (after a fatal error was sent).</summary>
    protected volatile bool _closeRequested;

    /// <summary>How far <see cref="ProcessBatchAsync"/> consumed the batch it was given.</summary>
    protected SequencePosition _consumed;

    /// <summary>Writing to the client failed: the pump stops writing to it.</summary>
    protected volatile bool _outputBroken;

    /// <summary>Admission, slots and RU of this client (null when QoS is off).</summary>
    protected QosSession? _qos;

    /// <summary>Metrics and traces of this client's units (null when telemetry is off).</summary>
    protected UnitTelemetry? _telemetry;

    /// <summary>Guards <see cref="_unit"/> against the pump completing units while the client's loop starts one.</summary>
    protected readonly Lock _unitLock = new();

    /// <summary>The current request unit (QoS statement), counting from 1.</summary>
    protected int _unit;

    private IBackendPool? _balanced;   // the pool whose host counts this client's transaction as in flight
    private long _balancedSince;

    /// <summary>Where the pump writes this client's responses; null once writing to the client failed.</summary>
    public PipeWriter? WritableOutput => _outputBroken ? null : _output;

    /// <summary>
    /// The command loop after login: each read is a batch of the client's messages, handled by the
    /// protocol (<see cref="ProcessBatchAsync"/>), then flushed to the server and the client
    /// (<see cref="EndBatchAsync"/>). Ends when the client leaves, after a fatal error, or when the
    /// proxy drains and the client is between transactions.
    /// </summary>
    protected async Task CommandLoopAsync()
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
                    await WriteShutdownAsync();
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

    /// <summary>Handles every whole message of <paramref name="buffer"/>, setting <see cref="_consumed"/>; false when the client said goodbye.</summary>
    protected abstract ValueTask<bool> ProcessBatchAsync(ReadOnlySequence<byte> buffer);

    /// <summary>Ends a batch: flushes what went to the server and what the edge wrote to the client.</summary>
    protected abstract ValueTask EndBatchAsync();

    /// <summary>Whether the client has no transaction (nor unit) open: a drain may close it now.</summary>
    protected abstract bool IsBetweenTransactions();

    /// <summary>Tells the client the proxy is shutting down (its protocol's fatal error).</summary>
    protected abstract Task WriteShutdownAsync();

    /// <summary>
    /// The session is over (called last, after its server connection was detached, so that no pump
    /// writes to the client any more; not with TLS, whose layer owns the transport's pipes): completes
    /// the transport's input and output, so that their buffers go back to the pool instead of to the
    /// collector with every client connection (about 20 KB each on the epoll transport). A flush
    /// still in progress keeps its buffer.
    /// </summary>
    protected void CompleteTransport()
    {
        try
        {
            _input.Complete();
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException or InvalidOperationException)
        {
            // nothing to give back
        }
        try
        {
            _output.Complete(); // a stream-backed writer (the sockets transport) may try to send what is unflushed
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException or InvalidOperationException)
        {
            // the client is gone
        }
    }

    /// <summary>Flushes what the edge wrote to the client directly.</summary>
    [AsyncMethodBuilder(typeof(PooledValueTaskMethodBuilder))]
    protected async ValueTask FlushDirectAsync()
    {
        _outputDirty = false;
        await _output.FlushAsync();
    }

    /// <summary>The pump relayed <paramref name="bytes"/> of responses and finished request unit <paramref name="completedUnit"/> (0: none).</summary>
    public void OnResponses(long bytes, int completedUnit)
    {
        var qos = _qos;
        var telemetry = _telemetry;
        if (qos is null && telemetry is null)
            return;
        if (bytes > 0)
        {
            qos?.AddBytes(bytes, 0);
            telemetry?.AddBytes(bytes, 0);
        }
        if (completedUnit == 0)
            return;
        if (qos is null)
        {
            // Telemetry alone: it checks the unit against the one it has open (its state word).
            telemetry!.Complete(completedUnit, 0);
            return;
        }
        lock (_unitLock)
        {
            // A later unit may already be admitted (pipelining); it completed this one then.
            if (completedUnit == _unit)
            {
                var ru = qos.Complete().Ru;
                telemetry?.Complete(completedUnit, ru);
            }
        }
    }

    /// <summary>The server connection went back to the pool at the end of a transaction: so does the scheduler slot. Called under the connection's lock.</summary>
    public void OnTransactionReleased()
    {
        _qos?.ReleaseSlot();
        EndBalanced();
    }

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

    /// <summary>The attached server connection failed: tell the client (unless a message to it was cut in half) and close its connection.</summary>
    public abstract Task FailFromServerAsync(bool midMessage, string message);

    /// <summary>The client's transaction starts on <paramref name="pool"/>'s host: the balancer counts it in flight there.</summary>
    protected void StartBalanced(IBackendPool pool)
    {
        if (pool.Backends is not { } backends)
            return;
        _balancedSince = backends.Balancer.Start(pool.BackendIndex);
        Volatile.Write(ref _balanced, pool);
    }

    /// <summary>The transaction left its host: the balancer learns its latency and in-flight count.</summary>
    protected void EndBalanced()
    {
        if (Interlocked.Exchange(ref _balanced, null) is { } pool)
            pool.Backends!.Balancer.End(pool.BackendIndex, _balancedSince);
    }
}
