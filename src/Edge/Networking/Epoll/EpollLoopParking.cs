namespace MProxy.Edge.Networking.Epoll;

/// <summary>
/// When the epoll transport's loops beyond the first park — their threads stop waiting on their
/// sets, and the first loop serves those sets on its own thread — and when they come back
/// (<c>network.epollParking</c>, on by default).
/// </summary>
/// <remarks>
/// <para>
/// On a box shared with the database and its clients, one loop is the cheaper shape while it keeps
/// up: where the database is the bottleneck (TPC-B-like pgbench on 2 cores) two loops each sleep
/// and wake for a handful of events, and those extra context switches cost the box CPU the database
/// would use (measured: 121 µs of the proxy's system time per transaction with two loops, 90 with
/// one). Where the proxy is on the critical path of every transaction (select-only), one loop is not
/// enough: its thread never sleeps — there is always another event — and a second loop adds TPS.
/// </para>
/// <para>
/// The signal is each serving loop's sleeps per event over a window: the voluntary context switches
/// of its thread (<c>getrusage(RUSAGE_THREAD)</c>, read once per window) divided by the epoll events
/// it handled. A loop that sleeps often has time to spare; one that almost never sleeps is
/// saturated. A loop parks when it and the first loop both have had time to spare for a second; the
/// first loop, while it serves parked loops' sets, brings one back when it has slept less than once
/// per 83 events for half a second. Between the two thresholds the mode stays as it is, and after
/// any change the transport keeps its mode for <see cref="DwellMs"/>, so that the loops do not flap.
/// </para>
/// </remarks>
internal sealed class EpollLoopParking(bool enabled)
{
    /// <summary>How long a loop counts sleeps and events before it looks at them.</summary>
    public const long WindowMs = 250;

    /// <summary>How long the transport keeps its mode after a loop parked or came back.</summary>
    public const long DwellMs = 2000;

    /// <summary>Sleeps per event above which a loop has time to spare.</summary>
    /// <remarks>
    /// Measured with two loops serving (2026-12-06, pgbench, pool 20, 250-ms windows): TPC-B-like with
    /// 50 clients 0.08–0.30, select-only with 50 clients 0.011–0.033, with 250 clients 0.006–0.011.
    /// </remarks>
    public const double SpareAbove = 0.06;

    /// <summary>Sleeps per event below which the first loop, serving parked loops' sets, needs help.</summary>
    /// <remarks>Measured with one loop serving: select-only with 50 clients 0.003–0.005, TPC-B-like 0.03–0.06.</remarks>
    public const double SaturatedBelow = 0.012;

    /// <summary>Consecutive windows over <see cref="SpareAbove"/> (the loop's and the first's) before a loop parks.</summary>
    public const int ParkAfterWindows = 4;

    /// <summary>Consecutive windows under <see cref="SaturatedBelow"/> before the first loop brings a parked one back.</summary>
    public const int UnparkAfterWindows = 2;

    /// <summary>Events per window under which the first loop never asks for help (light load: one loop is always enough).</summary>
    public const long MinEventsToUnpark = 2000;

    private long _lastChange = long.MinValue / 2;
    private long _parks;
    private long _unparks;

    /// <summary>Whether loops park at all (<c>network.epollParking</c>).</summary>
    public bool Enabled { get; } = enabled;

    /// <summary>Times a loop parked since start.</summary>
    public long Parks => Volatile.Read(ref _parks);

    /// <summary>Times a parked loop came back since start.</summary>
    public long Unparks => Volatile.Read(ref _unparks);

    /// <summary>Sleeps per event of one window: infinite without events (an idle loop has all its time to spare).</summary>
    public static double SleepsPerEvent(long sleeps, long events) => events <= 0 ? double.PositiveInfinity : (double)sleeps / events;

    /// <summary>Whether a serving loop with <paramref name="own"/> sleeps per event parks, the first loop's being <paramref name="first"/>.</summary>
    public static bool ShouldPark(double own, double first) => own > SpareAbove && first > SpareAbove;

    /// <summary>Whether the first loop, serving parked loops with <paramref name="own"/> sleeps per event over <paramref name="events"/> events, brings one back.</summary>
    public static bool ShouldUnpark(double own, long events) => own < SaturatedBelow && events >= MinEventsToUnpark;

    /// <summary>
    /// Claims the one change the transport may make now (<paramref name="nowMs"/>: <see cref="Environment.TickCount64"/>):
    /// false within <see cref="DwellMs"/> of the last, or when another loop claimed it first.
    /// </summary>
    public bool TryClaimChange(long nowMs, bool park)
    {
        var last = Volatile.Read(ref _lastChange);
        if (nowMs - last < DwellMs || Interlocked.CompareExchange(ref _lastChange, nowMs, last) != last)
            return false;
        if (park)
            Interlocked.Increment(ref _parks);
        else
            Interlocked.Increment(ref _unparks);
        return true;
    }
}
