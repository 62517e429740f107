namespace MProxy.TestSupport;

/// <summary>
/// A <see cref="TimeProvider"/> that moves only when told to (<see cref="Advance"/>), firing due
/// timers in due-time order. Timestamps are in ticks (100 ns). Thread-safe.
/// </summary>
public sealed class ManualTimeProvider : TimeProvider
{
    private readonly object _lock = new();
    private readonly List<ManualTimer> _timers = [];
    private DateTimeOffset _now;
    private long _sequence;

    public ManualTimeProvider(DateTimeOffset? start = null) => _now = start ?? new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);

    public override DateTimeOffset GetUtcNow()
    {
        lock (_lock)
            return _now;
    }

    public override long TimestampFrequency => TimeSpan.TicksPerSecond;

    public override long GetTimestamp()
    {
        lock (_lock)
            return _now.UtcTicks;
    }

    public override TimeZoneInfo LocalTimeZone => TimeZoneInfo.Utc;

    /// <summary>Moves time forward by <paramref name="delta"/>, firing every timer that falls due on the way, in order.</summary>
    public void Advance(TimeSpan delta)
    {
        if (delta < TimeSpan.Zero)
            throw new ArgumentOutOfRangeException(nameof(delta), "time only moves forward");
        DateTimeOffset target;
        lock (_lock)
            target = _now + delta;
        while (true)
        {
            ManualTimer? due = null;
            lock (_lock)
            {
                foreach (var timer in _timers)
                    if (timer.DueAt <= target && (due is null || timer.DueAt < due.DueAt || (timer.DueAt == due.DueAt && timer.Sequence < due.Sequence)))
                        due = timer;
                if (due is null)
                {
                    _now = target;
                    return;
                }
                if (due.DueAt > _now)
                    _now = due.DueAt;
                due.Reschedule(_now);
            }
            due.Fire();
        }
    }

    /// <summary>The time of the next timer to fire, if any.</summary>
    public DateTimeOffset? NextDue
    {
        get
        {
            lock (_lock)
            {
                DateTimeOffset? next = null;
                foreach (var timer in _timers)
                    if (next is null || timer.DueAt < next)
                        next = timer.DueAt;
                return next;
            }
        }
    }

    /// <summary>Timers armed now (created or changed to a due time, not yet fired, stopped or disposed).</summary>
    public int ArmedTimers
    {
        get
        {
            lock (_lock)
                return _timers.Count;
        }
    }

    public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
    {
        var timer = new ManualTimer(this, callback, state);
        timer.Change(dueTime, period);
        return timer;
    }

    private sealed class ManualTimer(ManualTimeProvider owner, TimerCallback callback, object? state) : ITimer
    {
        private TimeSpan _period = Timeout.InfiniteTimeSpan;

        public DateTimeOffset DueAt { get; private set; }

        public long Sequence { get; private set; }

        public bool Change(TimeSpan dueTime, TimeSpan period)
        {
            lock (owner._lock)
            {
                owner._timers.Remove(this);
                _period = period;
                if (dueTime == Timeout.InfiniteTimeSpan)
                    return true;
                DueAt = owner._now + dueTime;
                Sequence = owner._sequence++;
                owner._timers.Add(this);
                return true;
            }
        }

        /// <summary>Called under the owner's lock when the timer fires at <paramref name="now"/>.</summary>
        public void Reschedule(DateTimeOffset now)
        {
            owner._timers.Remove(this);
            if (_period != Timeout.InfiniteTimeSpan && _period > TimeSpan.Zero)
            {
                DueAt = now + _period;
                Sequence = owner._sequence++;
                owner._timers.Add(this);
            }
        }

        public void Fire() => callback(state);

        public void Dispose()
        {
            lock (owner._lock)
                owner._timers.Remove(this);
        }

        public ValueTask DisposeAsync()
        {
            Dispose();
            return ValueTask.CompletedTask;
        }
    }
}
