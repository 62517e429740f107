using System.IO.Pipelines;
using MProxy.Edge.Backends;
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
/// What every protocol's client session shares with the server connection that relays to it: the
/// client's output (the pump writes responses to it, <see cref="FlushOutputAsync"/> flushes them),
/// the request-unit counter whose completion the pump reports (<see cref="OnResponses"/>: RU and
/// telemetry), and the balancer's count of the client's transaction on its host. The PostgreSQL and
/// MySQL sessions derive from it; <see cref="RelayServerConnection{TClient}"/> calls its public members.
/// </summary>
internal abstract class RelayClientSession(PipeWriter output)
{
    /// <summary>The client's side of its connection.</summary>
    protected readonly PipeWriter _output = output;

    /// <summary>Writing to the client failed: the pump stops writing to it.</summary>
    protected volatile bool _outputBroken;

    /// <summary>Admission, slots and RU of this client (null when QoS is off).</summary>
    protected QosSession? _qos;

    /// <summary>Metrics and traces of this client's units (null when telemetry is off).</summary>
    protected UnitTelemetry? _telemetry;

    /// <summary>Guards <see cref="_unit"/> against the pump completing units while the client's loop starts one.</summary>
    protected readonly object _unitLock = new();

    /// <summary>The current request unit (QoS statement), counting from 1.</summary>
    protected int _unit;

    private IBackendPool? _balanced;   // the pool whose host counts this client's transaction as in flight
    private long _balancedSince;

    /// <summary>Where the pump writes this client's responses; null once writing to the client failed.</summary>
    public PipeWriter? WritableOutput => _outputBroken ? null : _output;

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
        lock (_unitLock)
        {
            // A later unit may already be admitted (pipelining); it completed this one then.
            if (completedUnit == _unit)
            {
                var ru = qos?.Complete().Ru ?? 0;
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
