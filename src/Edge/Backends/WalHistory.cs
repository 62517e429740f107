namespace MProxy.Edge.Backends;

/// <summary>
/// The primary's WAL positions as successive probes saw them, each with the time it was first seen:
/// what a replica's lag is measured against. Pure; not thread-safe (the monitor uses it under its lock).
/// </summary>
/// <remarks>
/// Only advances are kept, so an idle primary adds nothing and a bounded ring covers a long time.
/// The time lag of a replica whose replay position is R is <c>seenAt − t</c>, where t is the time of
/// the first kept position above R: the primary had WAL at t that the replica still has not replayed
/// when it was seen. It is a lower bound of the true lag, exact to one probe interval, and (unlike
/// <c>now() − pg_last_xact_replay_timestamp()</c>) it does not grow while the primary is idle, and
/// needs no clock agreement between hosts: every time is the edge's.
/// </remarks>
internal sealed class WalHistory(int capacity)
{
    private readonly Lsn[] _lsns = new Lsn[Math.Max(2, capacity)];
    private readonly long[] _seenAt = new long[Math.Max(2, capacity)];
    private int _start;
    private int _count;

    public int Count => _count;

    public Lsn Latest => _count == 0 ? Lsn.None : _lsns[Slot(_count - 1)];

    public void Clear()
    {
        _start = 0;
        _count = 0;
    }

    /// <summary>Records the primary's position at <paramref name="seenAt"/> (a timestamp); ignored unless it advanced.</summary>
    public void Add(Lsn lsn, long seenAt)
    {
        if (lsn.IsNone)
            return;
        if (_count > 0)
        {
            var latest = _lsns[Slot(_count - 1)];
            if (lsn <= latest)
            {
                if (lsn < latest)
                    Clear(); // the primary went back (another primary, a restore): start over
                else
                    return;
            }
        }
        if (_count == _lsns.Length)
        {
            _start = (_start + 1) % _lsns.Length;
            _count--;
        }
        var slot = Slot(_count);
        _lsns[slot] = lsn;
        _seenAt[slot] = seenAt;
        _count++;
    }

    /// <summary>WAL bytes the primary had at its latest sample beyond <paramref name="replay"/>; null when there is no sample.</summary>
    public long? LagBytes(Lsn replay) => _count == 0 ? null : Latest.BytesAfter(replay);

    /// <summary>
    /// How long before <paramref name="seenAt"/> the primary already had WAL beyond <paramref name="replay"/>
    /// (in timestamp units of <paramref name="time"/>); zero when caught up; null when there is no sample.
    /// </summary>
    public TimeSpan? LagTime(Lsn replay, long seenAt, TimeProvider time)
    {
        if (_count == 0)
            return null;
        for (var i = 0; i < _count; i++)
        {
            var slot = Slot(i);
            if (_lsns[slot] > replay)
            {
                var lag = time.GetElapsedTime(_seenAt[slot], seenAt);
                return lag > TimeSpan.Zero ? lag : TimeSpan.Zero;
            }
        }
        return TimeSpan.Zero;
    }

    private int Slot(int i) => (_start + i) % _lsns.Length;
}
