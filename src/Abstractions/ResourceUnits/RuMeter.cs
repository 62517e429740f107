namespace MProxy.Abstractions.ResourceUnits;

/// <summary>
/// Charges one running statement incrementally: its base when it starts, then — at every
/// <see cref="Advance"/> — the latency and bytes it accumulated since the previous call. A slow or
/// never-ending statement therefore drains its tenant's budget while it is still in flight, instead
/// of at the end (or never). The deltas always add up to <see cref="RuFormula.Cost"/> of the totals
/// observed so far (<see cref="Charged"/>), however the calls are spaced.
/// </summary>
/// <remarks>
/// A mutable struct so that a session can keep one in a field and reuse it for every statement
/// without allocating: keep it in a field or pass it by <c>ref</c>; a copy meters separately. Not
/// thread-safe; its owner serializes calls. Totals passed in are cumulative; one that goes backwards
/// is ignored (charges never become refunds).
/// </remarks>
public struct RuMeter
{
    private RuWeights? _weights;
    private double _latencyMs;
    private long _bytesRead;
    private long _bytesWritten;

    /// <summary>Whether a statement is being metered (between <see cref="Start"/> and <see cref="Stop"/>).</summary>
    public readonly bool IsRunning => _weights is not null;

    public RuKind Kind { readonly get; private set; }

    /// <summary>RU charged so far for this statement (base included).</summary>
    public double Charged { readonly get; private set; }

    /// <summary>Latency charged so far, in milliseconds.</summary>
    public readonly double LatencyMs => _latencyMs;

    public readonly long BytesRead => _bytesRead;

    public readonly long BytesWritten => _bytesWritten;

    /// <summary>Starts metering a statement; returns its base cost, the first charge.</summary>
    public double Start(RuWeights weights, RuKind kind)
    {
        ArgumentNullException.ThrowIfNull(weights);
        _weights = weights;
        Kind = kind;
        _latencyMs = 0;
        _bytesRead = 0;
        _bytesWritten = 0;
        Charged = weights.BaseOf(kind);
        return Charged;
    }

    /// <summary>
    /// Brings the meter to the statement's cumulative totals and returns the RU they added since the
    /// previous call (0 when nothing grew or nothing is running).
    /// </summary>
    public double Advance(TimeSpan elapsed, long bytesRead, long bytesWritten)
    {
        if (_weights is not { } w)
            return 0;
        var latencyMs = elapsed.TotalMilliseconds;
        var delta = 0.0;
        if (latencyMs > _latencyMs)
        {
            delta += w.LatencyPerMs * (latencyMs - _latencyMs);
            _latencyMs = latencyMs;
        }
        if (bytesRead > _bytesRead)
        {
            delta += w.ReadPerByte * (bytesRead - _bytesRead);
            _bytesRead = bytesRead;
        }
        if (bytesWritten > _bytesWritten)
        {
            delta += w.WritePer4KiB * ((bytesWritten - _bytesWritten) / 4096.0);
            _bytesWritten = bytesWritten;
        }
        Charged += delta;
        return delta;
    }

    /// <summary>Ends metering; returns the statement's total RU.</summary>
    public double Stop()
    {
        _weights = null;
        return Charged;
    }
}
