namespace MProxy.Simulation.Core;

/// <summary>
/// The simulated time of one world and its only scheduler: a <see cref="TimeProvider"/> whose timers,
/// together with every event the simulation schedules (<see cref="At"/>, <see cref="After"/>,
/// <see cref="Delay"/>), sit in one queue ordered by due time and then by scheduling order. One
/// driver (<see cref="RunNext"/>) pops the next entry, moves the clock to it and runs it on the
/// driver's thread; nothing else ever moves time.
/// </summary>
/// <remarks>
/// Product code gets this clock wherever it takes a <see cref="TimeProvider"/>: pool and scheduler
/// timeouts, CoDel's timer, <c>Task.Delay</c>, <c>CancellationTokenSource</c> timeouts, the
/// monitor's loop, lease expiry. Their callbacks and the continuations they release run inline on
/// the driver's thread (there is no synchronization context), so the run is one deterministic
/// sequence. A timer created, changed or fired on another thread would mean some work escaped to
/// the thread pool: it is recorded as a determinism escape and fails the run.
/// </remarks>
public sealed class SimClock : TimeProvider
{
    /// <summary>What <see cref="GetUtcNow"/> returns at simulated time zero.</summary>
    public static readonly DateTimeOffset Epoch = new(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);

    private readonly PriorityQueue<Entry, (long Due, long Sequence)> _queue = new();
    private long _now;
    private long _sequence;
    private int _driverThread = -1;

    public SimClock()
    {
    }

    /// <summary>The first sign that work left the driver's thread (null: none).</summary>
    public string? Escape { get; private set; }

    public long NowTicks => _now;

    public TimeSpan Elapsed => TimeSpan.FromTicks(_now);

    /// <summary>Events run so far.</summary>
    public long EventsRun { get; private set; }

    public int Pending => _queue.Count;

    public override DateTimeOffset GetUtcNow() => Epoch.AddTicks(_now);

    public override long GetTimestamp() => _now;

    public override long TimestampFrequency => TimeSpan.TicksPerSecond;

    public override TimeZoneInfo LocalTimeZone => TimeZoneInfo.Utc;

    /// <summary>Makes the calling thread the driver: the only thread that may schedule or run work.</summary>
    public void BindToCurrentThread() => _driverThread = Environment.CurrentManagedThreadId;

    public bool OnDriverThread => _driverThread < 0 || Environment.CurrentManagedThreadId == _driverThread;

    /// <summary>Records a determinism escape when called off the driver's thread.</summary>
    public void CheckThread(string what)
    {
        if (!OnDriverThread)
            Escape ??= $"{what} ran on thread {Environment.CurrentManagedThreadId}, not the simulation's driver thread {_driverThread} (work escaped to the thread pool) at {Environment.StackTrace}";
    }

    public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
    {
        CheckThread("TimeProvider.CreateTimer");
        var timer = new SimTimer(this, callback, state);
        timer.Change(dueTime, period);
        return timer;
    }

    /// <summary>Runs <paramref name="action"/> at simulated time <paramref name="ticks"/> (not before now).</summary>
    public void At(long ticks, Action action)
    {
        CheckThread("SimClock.At");
        Enqueue(new Entry(Math.Max(ticks, _now), action, null, 0));
    }

    public void After(TimeSpan delay, Action action) => At(_now + Math.Max(0, delay.Ticks), action);

    /// <summary>A task completed (on the driver's thread) <paramref name="delay"/> from now.</summary>
    public Task Delay(TimeSpan delay)
    {
        var done = new TaskCompletionSource();
        After(delay, () => done.TrySetResult());
        return done.Task;
    }

    /// <summary>When the next entry is due, or null when nothing is scheduled.</summary>
    public long? NextDue
    {
        get
        {
            while (_queue.TryPeek(out var entry, out var key))
            {
                if (entry.IsLive)
                    return key.Due;
                _queue.Dequeue();
            }
            return null;
        }
    }

    /// <summary>
    /// Runs the next entry due at or before <paramref name="until"/>, moving the clock to its due
    /// time; false when there is none (the clock is then left where it is).
    /// </summary>
    public bool RunNext(long until)
    {
        CheckThread("SimClock.RunNext");
        while (_queue.TryPeek(out var entry, out var key))
        {
            if (!entry.IsLive)
            {
                _queue.Dequeue();
                continue;
            }
            if (key.Due > until)
                return false;
            _queue.Dequeue();
            _now = key.Due;
            EventsRun++;
            entry.Run();
            return true;
        }
        return false;
    }

    /// <summary>Moves the clock to <paramref name="ticks"/> when nothing is due before it.</summary>
    public void AdvanceIdle(long ticks)
    {
        if (NextDue is { } due && due < ticks)
            throw new InvalidOperationException("events are due before the target time");
        if (ticks > _now)
            _now = ticks;
    }

    private void Enqueue(Entry entry) => _queue.Enqueue(entry, (entry.Due, _sequence++));

    private sealed class Entry(long due, Action? action, SimTimer? timer, long version)
    {
        public long Due { get; } = due;

        public bool IsLive => timer is null || timer.Version == version;

        public void Run()
        {
            if (timer is not null)
                timer.Fire(version);
            else
                action!();
        }
    }

    private sealed class SimTimer(SimClock clock, TimerCallback callback, object? state) : ITimer
    {
        private TimeSpan _period = Timeout.InfiniteTimeSpan;
        private bool _disposed;

        public long Version { get; private set; }

        public bool Change(TimeSpan dueTime, TimeSpan period)
        {
            clock.CheckThread("ITimer.Change");
            if (_disposed)
                return false;
            Version++;
            _period = period;
            if (dueTime == Timeout.InfiniteTimeSpan)
                return true;
            clock.Enqueue(new Entry(clock._now + Math.Max(0, dueTime.Ticks), null, this, Version));
            return true;
        }

        public void Fire(long version)
        {
            if (_disposed || version != Version)
                return;
            if (_period != Timeout.InfiniteTimeSpan && _period > TimeSpan.Zero)
                clock.Enqueue(new Entry(clock._now + _period.Ticks, null, this, Version));
            callback(state);
        }

        public void Dispose()
        {
            _disposed = true;
            Version++;
        }

        public ValueTask DisposeAsync()
        {
            Dispose();
            return ValueTask.CompletedTask;
        }
    }
}
