namespace MProxy.Edge.Qos;

/// <summary>Size of an <see cref="RuBucket"/>: refill rate, capacity and how deep it may go into debt.</summary>
internal readonly record struct RuBucketSettings(double RuPerSecond, double Burst, double DebtMax)
{
    public static RuBucketSettings For(ResourceGroupConfig group) => new(group.RuPerSecond, group.Burst, group.DebtMax);
}

/// <summary>What a bucket booked since the previous <see cref="RuBucket.TakeUsage"/> (for usage reports to the policy tier).</summary>
internal readonly record struct RuUsage(double Charged, double Forgiven, double Granted, double LeaseExpired);

/// <summary>
/// A tenant's RU token bucket: refilled at <see cref="RuBucketSettings.RuPerSecond"/> up to
/// <see cref="RuBucketSettings.Burst"/>, charged by the statements it admits, and allowed into debt
/// down to <c>-DebtMax</c>. A statement is admitted while the bucket is not in debt and pays its base
/// at once (<see cref="TryAdmit(double, out TimeSpan)"/>); its latency and bytes are charged as they accrue
/// (<see cref="Charge"/>) and may push the bucket into debt, which the tenant's later statements
/// wait out (<see cref="RetryAfter"/>). Charges that would go below <c>-DebtMax</c> are forgiven and
/// counted — so over any window of length T the RU booked is at most
/// <c>RuPerSecond·T + Burst + DebtMax</c> (plus what was granted, below).
/// </summary>
/// <remarks>
/// <para>
/// <b>Leases.</b> The policy tier refills a tenant's local token cache with leases
/// (<see cref="Grant"/>: an amount of RU valid for a period). Granted RU first pays off any debt; the
/// rest is a separate balance spent before the local one and dropped (counted as
/// <see cref="RuUsage.LeaseExpired"/>) when the lease ends. A lease-fed tenant runs with a local rate
/// of 0 (the group's <c>ruPerSecond: 0</c>, or <see cref="Reconfigure"/> by the lease client); when
/// leases stop coming the client switches the local rate to its fallback share — the bucket needs no
/// mode for that. Both sources can be active at once. <see cref="TakeUsage"/> is what the client
/// reports back per period.
/// </para>
/// <para>
/// <b>The line.</b> Statements that may wait for the bucket to come out of debt (a group's
/// <c>maxBudgetWaitMs</c>) are admitted in the order they arrived: <see cref="TryAdmitOrQueue"/>
/// gives a refused statement a <see cref="RuBudgetTicket"/>, only the ticket at the head of the line
/// is admitted (<see cref="TryAdmit(RuBudgetTicket, double, out TimeSpan)"/>), and while anyone is
/// in line a newcomer is not admitted ahead of them. Without the line every waiter raced the others
/// and newcomers for each repayment, and one could lose every race of its whole wait. A ticket that
/// stops asking (its statement gave up) leaves the line (<see cref="Leave"/>), and one that outstays
/// its deadline is dropped, so the line never stalls. The bucket wakes the ticket that comes first
/// (<see cref="RuBudgetTicket.WaitAsync"/>) when the one before it is admitted or leaves, and wakes
/// the first again when a lease or new settings raise what it may spend: only the first in line
/// sleeps on the clock (until its estimated turn), the others sleep until woken. Were they to poll
/// at their estimated turns, every waiter behind a first one that is a little late would poll
/// every millisecond, and on a loaded machine the polling delays the first one further. A full
/// bucket (balance at its burst, the burst above zero) holds nobody back: whoever asks first is
/// admitted, in line or not, since refill beyond the burst would otherwise be lost while the first
/// in line is late to ask (the bound on what the tenant books holds whoever spends it).
/// </para>
/// <para>
/// Thread-safe: every member takes the bucket's own lock (one bucket per tenant and group, so
/// contention is limited to one tenant's sessions). Time comes from the injected
/// <see cref="TimeProvider"/>; no member allocates except joining the line.
/// </para>
/// </remarks>
internal sealed class RuBucket
{
    /// <summary>The retry-after given when the bucket is in debt and has no local refill (it waits for a lease).</summary>
    public static readonly TimeSpan NoRefillRetryAfter = TimeSpan.FromSeconds(1);

    /// <summary>The shortest retry-after given to a statement in line behind another (whose turn it is, but which has not asked yet).</summary>
    public static readonly TimeSpan MinTurnRetryAfter = TimeSpan.FromMilliseconds(1);

    /// <summary>How long past its wait a ticket stays in line before the bucket drops it (its statement stopped asking).</summary>
    public static readonly TimeSpan AbandonedAfter = TimeSpan.FromSeconds(1);

    private static readonly TimeSpan MaxPatience = TimeSpan.FromDays(1);

    // Balances are doubles; refills computed from elapsed time may land a hair below zero.
    private const double Epsilon = 1e-9;

    private readonly Lock _lock = new();
    private readonly TimeProvider _time;
    private RuBucketSettings _settings;
    private double _local;      // refilled at the rate up to Burst; negative is debt, never below -DebtMax
    private double _leased;     // granted by leases, valid until _leaseValidUntil; > 0 only when _local >= 0
    private long _leaseValidUntil;
    private long _lastRefill;
    private double _charged;
    private double _forgiven;
    private double _bookedTotal;
    private double _granted;
    private double _leaseExpired;
    private readonly LinkedList<RuBudgetTicket> _line = new();

    /// <summary>A full bucket.</summary>
    public RuBucket(RuBucketSettings settings, TimeProvider time)
    {
        _time = time;
        _settings = settings;
        _local = settings.Burst;
        _lastRefill = time.GetTimestamp();
    }

    public RuBucketSettings Settings
    {
        get
        {
            lock (_lock)
                return _settings;
        }
    }

    /// <summary>RU available now: local balance (negative when in debt) plus unexpired leased RU.</summary>
    public double Balance
    {
        get
        {
            lock (_lock)
            {
                RefillLocked(_time.GetTimestamp());
                return _local + _leased;
            }
        }
    }

    /// <summary>Zero when a statement would be admitted now, else how long until it would.</summary>
    public TimeSpan RetryAfter
    {
        get
        {
            lock (_lock)
            {
                RefillLocked(_time.GetTimestamp());
                return RetryAfterLocked();
            }
        }
    }

    /// <summary>
    /// Admits a statement unless the bucket is in debt or statements are waiting in line, charging
    /// <paramref name="baseCost"/> at once (which may itself take the bucket into debt). When refused,
    /// <paramref name="retryAfter"/> estimates the time until the statement's turn at the back of the
    /// line: the debt and the bases of those ahead, repaid at the current rate.
    /// </summary>
    public bool TryAdmit(double baseCost, out TimeSpan retryAfter)
    {
        lock (_lock)
        {
            var now = _time.GetTimestamp();
            RefillLocked(now);
            DropAbandonedLocked(now);
            if (_local < -Epsilon || (_line.Count > 0 && !IsFullLocked()))
            {
                retryAfter = TurnAfterLocked(_line.Count, baseCost);
                return false;
            }
            ChargeLocked(baseCost);
            retryAfter = TimeSpan.Zero;
            return true;
        }
    }

    /// <summary>
    /// <see cref="TryAdmit(double, out TimeSpan)"/>, and when refused with a turn no later than
    /// <paramref name="maxWait"/>, joins the back of the line: <paramref name="ticket"/> is then the
    /// statement's place, to ask with until admitted or to <see cref="Leave"/>.
    /// </summary>
    public bool TryAdmitOrQueue(double baseCost, TimeSpan maxWait, out TimeSpan retryAfter, out RuBudgetTicket? ticket)
    {
        lock (_lock)
        {
            var now = _time.GetTimestamp();
            RefillLocked(now);
            DropAbandonedLocked(now);
            ticket = null;
            if (_local >= -Epsilon && (_line.Count == 0 || IsFullLocked()))
            {
                ChargeLocked(baseCost);
                retryAfter = TimeSpan.Zero;
                return true;
            }
            retryAfter = TurnAfterLocked(_line.Count, baseCost);
            if (retryAfter <= maxWait)
            {
                var patience = (maxWait < MaxPatience ? maxWait : MaxPatience) + AbandonedAfter;
                ticket = new RuBudgetTicket(this, now + ToTimestampTicks(patience), first: _line.Count == 0);
                ticket.Node = _line.AddLast(ticket);
            }
            return false;
        }
    }

    /// <summary>
    /// Admits the statement holding <paramref name="ticket"/> if its turn has come — it is at the head
    /// of the line and the bucket is not in debt — charging <paramref name="baseCost"/> and taking it
    /// out of the line. Otherwise <paramref name="retryAfter"/> estimates the time until its turn. A
    /// ticket the bucket dropped (it outstayed its deadline) is treated as a newcomer's.
    /// </summary>
    public bool TryAdmit(RuBudgetTicket ticket, double baseCost, out TimeSpan retryAfter)
    {
        ArgumentNullException.ThrowIfNull(ticket);
        if (ticket.Bucket != this)
            throw new ArgumentException("the ticket is another bucket's", nameof(ticket));
        lock (_lock)
        {
            var now = _time.GetTimestamp();
            RefillLocked(now);
            DropAbandonedLocked(now);
            var ahead = 0;
            if (ticket.Node is { } node)
            {
                for (var n = node.Previous; n is not null; n = n.Previous)
                    ahead++;
            }
            else
            {
                ahead = _line.Count;
            }
            if (_local >= -Epsilon && (ahead == 0 || IsFullLocked()))
            {
                LeaveLocked(ticket);
                ChargeLocked(baseCost);
                retryAfter = TimeSpan.Zero;
                return true;
            }
            retryAfter = TurnAfterLocked(ahead, baseCost);
            return false;
        }
    }

    /// <summary>Takes <paramref name="ticket"/> out of the line (its statement stopped waiting); does nothing if it is out already.</summary>
    public void Leave(RuBudgetTicket ticket)
    {
        ArgumentNullException.ThrowIfNull(ticket);
        lock (_lock)
            LeaveLocked(ticket);
    }

    /// <summary>Statements waiting in line now.</summary>
    public int Waiting
    {
        get
        {
            lock (_lock)
                return _line.Count;
        }
    }

    /// <summary>Charges RU a running or finished statement accrued; returns what was booked (the rest was forgiven at the debt bound).</summary>
    public double Charge(double ru)
    {
        lock (_lock)
        {
            RefillLocked(_time.GetTimestamp());
            return ChargeLocked(ru);
        }
    }

    /// <summary>
    /// Adds RU leased by the policy tier, valid for <paramref name="validFor"/> from now (a duration
    /// rather than an instant, so the silo's and the edge's clocks need not agree). Pays off debt
    /// first; an unexpired earlier lease's remainder stays valid until the later of the two ends.
    /// </summary>
    public void Grant(double ru, TimeSpan validFor)
    {
        if (!(ru > 0) || validFor <= TimeSpan.Zero)
            return;
        lock (_lock)
        {
            var now = _time.GetTimestamp();
            RefillLocked(now);
            _granted += ru;
            if (_local < 0)
            {
                var repay = Math.Min(ru, -_local);
                _local += repay;
                ru -= repay;
            }
            if (ru > 0)
            {
                _leased += ru;
                var until = now + ToTimestampTicks(validFor);
                if (until > _leaseValidUntil)
                    _leaseValidUntil = until;
            }
            _line.First?.Value.Wake(); // the first in line may go sooner than it was told
        }
    }

    /// <summary>Applies new settings (a reload, or the lease client changing the local rate); the balance is kept within the new bounds.</summary>
    public void Reconfigure(RuBucketSettings settings)
    {
        lock (_lock)
        {
            RefillLocked(_time.GetTimestamp());
            _settings = settings;
            _local = Math.Clamp(_local, -settings.DebtMax, settings.Burst);
            _line.First?.Value.Wake(); // its turn moved with the rate
        }
    }

    /// <summary>RU booked since the bucket was created (what <see cref="TakeUsage"/> reports as charged, never reset); reading it changes nothing.</summary>
    public double TotalBooked
    {
        get
        {
            lock (_lock)
                return _bookedTotal;
        }
    }

    /// <summary>Returns and resets the usage counters.</summary>
    public RuUsage TakeUsage()
    {
        lock (_lock)
        {
            RefillLocked(_time.GetTimestamp());
            var usage = new RuUsage(_charged, _forgiven, _granted, _leaseExpired);
            _charged = _forgiven = _granted = _leaseExpired = 0;
            return usage;
        }
    }

    private void RefillLocked(long now)
    {
        if (now > _lastRefill)
        {
            if (_local < _settings.Burst && _settings.RuPerSecond > 0)
            {
                var seconds = (now - _lastRefill) / (double)_time.TimestampFrequency;
                _local = Math.Min(_settings.Burst, _local + seconds * _settings.RuPerSecond);
            }
            _lastRefill = now;
        }
        if (_leased > 0 && now >= _leaseValidUntil)
        {
            _leaseExpired += _leased;
            _leased = 0;
        }
    }

    /// <summary>Whether refill would now be lost: the local balance is at its (non-zero) burst.</summary>
    private bool IsFullLocked() => _settings.Burst > 0 && _local >= _settings.Burst - Epsilon;

    private double ChargeLocked(double ru)
    {
        if (!(ru > 0))
            return 0;
        var fromLease = Math.Min(ru, _leased);
        _leased -= fromLease;
        var rest = ru - fromLease;
        var room = Math.Max(0, _local + _settings.DebtMax);
        var fromLocal = Math.Min(rest, room);
        _local -= fromLocal;
        _forgiven += rest - fromLocal;
        _charged += fromLease + fromLocal;
        _bookedTotal += fromLease + fromLocal;
        return fromLease + fromLocal;
    }

    private void LeaveLocked(RuBudgetTicket ticket)
    {
        if (ticket.Node is { } node)
        {
            var wasFirst = node.Previous is null;
            _line.Remove(node);
            ticket.Node = null;
            if (wasFirst && _line.First is { } next)
                next.Value.Promote();
        }
    }

    /// <summary>Drops tickets at the head of the line whose statements stopped asking well past their wait.</summary>
    private void DropAbandonedLocked(long now)
    {
        while (_line.First is { } head && head.Value.Deadline <= now)
            LeaveLocked(head.Value);
    }

    /// <summary>The estimated time until the turn of a statement with <paramref name="ahead"/> statements in line before it (never zero: it was refused).</summary>
    private TimeSpan TurnAfterLocked(int ahead, double baseCost)
    {
        if (_settings.RuPerSecond <= 0)
            return _local < -Epsilon ? NoRefillRetryAfter : MinTurnRetryAfter; // in debt, it waits for a lease; else for those ahead
        var owed = -_local + ahead * Math.Max(baseCost, 0);
        var turn = owed > 0 ? TimeSpan.FromTicks((long)Math.Ceiling(owed / _settings.RuPerSecond * TimeSpan.TicksPerSecond)) : TimeSpan.Zero;
        return turn > TimeSpan.Zero ? turn : MinTurnRetryAfter;
    }

    private TimeSpan RetryAfterLocked()
    {
        if (_local >= -Epsilon)
            return TimeSpan.Zero;
        if (_settings.RuPerSecond <= 0)
            return NoRefillRetryAfter;
        var seconds = -_local / _settings.RuPerSecond;
        return TimeSpan.FromTicks((long)Math.Ceiling(seconds * TimeSpan.TicksPerSecond));
    }

    private long ToTimestampTicks(TimeSpan span) =>
        (long)Math.Ceiling(span.Ticks * ((double)_time.TimestampFrequency / TimeSpan.TicksPerSecond));
}

/// <summary>
/// A statement's place in an <see cref="RuBucket"/>'s line of statements waiting for budget (see
/// <see cref="RuBucket.TryAdmitOrQueue"/>). Owned by the statement; the bucket takes it out of the
/// line when it is admitted, when it leaves, or when it outstays <see cref="Deadline"/>, and wakes
/// it (<see cref="WaitAsync"/>) when it becomes first in line or the first's turn moves.
/// </summary>
internal sealed class RuBudgetTicket
{
    private readonly Lock _sync = new();
    private TaskCompletionSource? _wait;    // the statement's current wait; guarded by _sync
    private bool _woken;                    // woken while not waiting: the next wait returns at once
    private volatile bool _first;

    internal RuBudgetTicket(RuBucket bucket, long deadline, bool first)
    {
        Bucket = bucket;
        Deadline = deadline;
        _first = first;
    }

    /// <summary>
    /// Whether the ticket has been first in line: only then does its turn depend on the clock (the
    /// bucket's debt) rather than on those ahead of it, so only then should its statement sleep
    /// until its estimated turn. Once set it stays set.
    /// </summary>
    public bool IsFirst => _first;

    /// <summary>
    /// Waits until the bucket wakes the ticket (it became first in line, or a lease or new settings
    /// moved its turn), <paramref name="timeout"/> passes on <paramref name="time"/>, or
    /// <paramref name="cancellationToken"/> is cancelled (then throws). Returns at once when the
    /// ticket was woken since the last wait. One statement waits at a time.
    /// </summary>
    public Task WaitAsync(TimeSpan timeout, TimeProvider time, CancellationToken cancellationToken)
    {
        TaskCompletionSource wait;
        lock (_sync)
        {
            if (_woken)
            {
                _woken = false;
                return Task.CompletedTask;
            }
            _wait = wait = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }
        return WaitCoreAsync(wait, timeout, time, cancellationToken);
    }

    private async Task WaitCoreAsync(TaskCompletionSource wait, TimeSpan timeout, TimeProvider time, CancellationToken cancellationToken)
    {
        try
        {
            using var timer = time.CreateTimer(static state => ((TaskCompletionSource)state!).TrySetResult(), wait, timeout, Timeout.InfiniteTimeSpan);
            await using var cancel = cancellationToken.UnsafeRegister(static (state, token) => ((TaskCompletionSource)state!).TrySetCanceled(token), wait);
            await wait.Task.ConfigureAwait(false);
        }
        finally
        {
            lock (_sync)
            {
                if (_wait == wait)
                    _wait = null;
            }
        }
    }

    /// <summary>Marks the ticket first in line and wakes it. Called under the bucket's lock.</summary>
    internal void Promote()
    {
        _first = true;
        Wake();
    }

    /// <summary>Ends the statement's current wait, or the next one if it is not waiting. Called under the bucket's lock.</summary>
    internal void Wake()
    {
        TaskCompletionSource? wait;
        lock (_sync)
        {
            wait = _wait;
            _wait = null;
            _woken = wait is null;
        }
        wait?.TrySetResult(); // continuations run asynchronously: never under the bucket's lock
    }

    /// <summary>The bucket whose line this is.</summary>
    public RuBucket Bucket { get; }

    /// <summary>The timestamp after which the bucket drops the ticket (the statement's wait plus <see cref="RuBucket.AbandonedAfter"/>).</summary>
    internal long Deadline { get; }

    /// <summary>The ticket's node in the line; null once it is out. Guarded by the bucket's lock.</summary>
    internal LinkedListNode<RuBudgetTicket>? Node { get; set; }
}
