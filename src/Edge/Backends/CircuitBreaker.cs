namespace MProxy.Edge.Backends;

/// <summary>The states of a <see cref="CircuitBreaker"/>, valued for a metric (0 closed, 1 half-open, 2 open).</summary>
public enum BreakerState
{
    /// <summary>Traffic flows; consecutive failures are counted.</summary>
    Closed = 0,

    /// <summary>The cooldown is over: one trial (the next probe) decides between closed and open.</summary>
    HalfOpen = 1,

    /// <summary>No traffic until the cooldown ends.</summary>
    Open = 2,
}

/// <summary>One change of a breaker's state, as <see cref="CircuitBreaker.StateChanged"/> reports it.</summary>
/// <param name="Backend">The backend index.</param>
/// <param name="From">The state before.</param>
/// <param name="To">The state after.</param>
/// <param name="Trips">Openings since the breaker was last closed (the backoff exponent).</param>
/// <param name="Cooldown">When the change is to <see cref="BreakerState.Open"/>: how long until a trial.</param>
/// <param name="Reason">What caused the change (the failure's message, or "probe succeeded").</param>
public readonly record struct BreakerTransition(int Backend, BreakerState From, BreakerState To, int Trips, TimeSpan Cooldown, string Reason);

/// <summary>
/// The circuit breaker of one backend: closed → open after <see cref="BreakerSettings.FailuresToOpen"/>
/// consecutive failures (probes and connects alike); open → half-open when the cooldown is over
/// (<see cref="TryBeginTrial"/>); half-open → closed on a success, or → open again on a failure with
/// the cooldown doubled, up to <see cref="BreakerSettings.CooldownMax"/>, minus a random jitter.
/// </summary>
/// <remarks>
/// Thread-safe: every transition happens under one lock, in <see cref="Transition"/>.
/// <see cref="State"/> and <see cref="ConsecutiveFailures"/> are read without the lock.
/// <see cref="StateChanged"/> is raised after the lock is released, on the thread that caused the
/// change; when two threads race, handlers may see transitions out of order, so each carries its
/// From and To. The clock is the injected <see cref="TimeProvider"/> and the jitter comes from the
/// seeded <see cref="Random"/> the breaker was given (used only under the lock).
/// </remarks>
public sealed class CircuitBreaker
{
    private readonly Lock _lock = new();
    private readonly BreakerSettings _settings;
    private readonly TimeProvider _time;
    private readonly Random _random;
    private volatile BreakerState _state = BreakerState.Closed;
    private int _failures;
    private int _trips;          // openings since the breaker was last closed
    private long _retryAt;      // timestamp when an open breaker may half-open

    public CircuitBreaker(int backend, BreakerSettings settings, TimeProvider time, Random random)
    {
        Backend = backend;
        _settings = settings;
        _time = time;
        _random = random;
    }

    /// <summary>The backend index this breaker guards.</summary>
    public int Backend { get; }

    public BreakerState State => _state;

    /// <summary>Failures since the last success (what opens a closed breaker).</summary>
    public int ConsecutiveFailures => Volatile.Read(ref _failures);

    /// <summary>How many times the breaker opened since it was last closed (the backoff exponent).</summary>
    public int Trips => Volatile.Read(ref _trips);

    /// <summary>While open: when the cooldown ends.</summary>
    public DateTimeOffset? RetryAt
    {
        get
        {
            lock (_lock)
            {
                if (_state != BreakerState.Open)
                    return null;
                return _time.GetUtcNow() + _time.GetElapsedTime(_time.GetTimestamp(), _retryAt);
            }
        }
    }

    /// <summary>Raised after each change of <see cref="State"/>; handlers must be quick and must not throw.</summary>
    public event Action<BreakerTransition>? StateChanged;

    /// <summary>
    /// Whether a probe (or other trial) may be sent now: yes when closed or half-open; when open, yes
    /// only once the cooldown is over, which moves the breaker to half-open.
    /// </summary>
    public bool TryBeginTrial()
    {
        if (_state != BreakerState.Open)
            return true;
        BreakerTransition? change = null;
        lock (_lock)
        {
            if (_state == BreakerState.Open)
            {
                if (_time.GetTimestamp() < _retryAt)
                    return false;
                change = Transition(BreakerState.HalfOpen, TimeSpan.Zero, "cooldown over");
            }
        }
        Raise(change);
        return true;
    }

    /// <summary>A probe or a connection succeeded: resets the failure count and closes a half-open breaker.</summary>
    /// <remarks>A success while open (a query that started before the breaker opened) closes nothing: the trial decides.</remarks>
    public void RecordSuccess()
    {
        if (_state == BreakerState.Closed && Volatile.Read(ref _failures) == 0)
            return;
        BreakerTransition? change = null;
        lock (_lock)
        {
            switch (_state)
            {
                case BreakerState.Closed:
                    _failures = 0;
                    break;
                case BreakerState.HalfOpen:
                    _failures = 0;
                    _trips = 0;
                    change = Transition(BreakerState.Closed, TimeSpan.Zero, "trial succeeded");
                    break;
            }
        }
        Raise(change);
    }

    /// <summary>A probe or a connection failed: counts it, and opens the breaker at the threshold or after a failed trial.</summary>
    public void RecordFailure(string reason)
    {
        BreakerTransition? change = null;
        lock (_lock)
        {
            _failures++;
            switch (_state)
            {
                case BreakerState.Closed when _failures >= _settings.FailuresToOpen:
                case BreakerState.HalfOpen:
                    _trips++;
                    var cooldown = Cooldown(_trips);
                    _retryAt = _time.GetTimestamp() + (long)(cooldown.TotalSeconds * _time.TimestampFrequency);
                    change = Transition(BreakerState.Open, cooldown, reason);
                    break;
            }
        }
        Raise(change);
    }

    /// <summary>
    /// The cooldown after opening number <paramref name="trips"/>: <c>min(max, base · 2^(trips−1))</c>,
    /// shortened by up to <see cref="BreakerSettings.Jitter"/> of itself at random so that edges that
    /// saw the same failure do not retry in step.
    /// </summary>
    private TimeSpan Cooldown(int trips)
    {
        var exponent = Math.Min(trips - 1, 30);
        var ceiling = Math.Min(_settings.CooldownMax.Ticks, _settings.CooldownBase.Ticks * (1L << Math.Min(exponent, 24)));
        if (ceiling < 0)
            ceiling = _settings.CooldownMax.Ticks;
        var jitter = _settings.Jitter * _random.NextDouble();
        return TimeSpan.FromTicks(Math.Max(1, (long)(ceiling * (1 - jitter))));
    }

    /// <summary>The one place the state changes (called under the lock).</summary>
    private BreakerTransition Transition(BreakerState to, TimeSpan cooldown, string reason)
    {
        var from = _state;
        _state = to;
        return new BreakerTransition(Backend, from, to, _trips, cooldown, reason);
    }

    private void Raise(BreakerTransition? change)
    {
        if (change is { } c)
            StateChanged?.Invoke(c);
    }
}
