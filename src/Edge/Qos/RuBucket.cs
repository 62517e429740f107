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
/// at once (<see cref="TryAdmit"/>); its latency and bytes are charged as they accrue
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
/// Thread-safe: every member takes the bucket's own lock (one bucket per tenant and group, so
/// contention is limited to one tenant's sessions). Time comes from the injected
/// <see cref="TimeProvider"/>; no member allocates.
/// </para>
/// </remarks>
internal sealed class RuBucket
{
    /// <summary>The retry-after given when the bucket is in debt and has no local refill (it waits for a lease).</summary>
    public static readonly TimeSpan NoRefillRetryAfter = TimeSpan.FromSeconds(1);

    // Balances are doubles; refills computed from elapsed time may land a hair below zero.
    private const double Epsilon = 1e-9;

    private readonly object _lock = new();
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
    /// Admits a statement unless the bucket is in debt, charging <paramref name="baseCost"/> at once
    /// (which may itself take the bucket into debt). When refused, <paramref name="retryAfter"/> is
    /// the time until the bucket is out of debt at its current rate.
    /// </summary>
    public bool TryAdmit(double baseCost, out TimeSpan retryAfter)
    {
        lock (_lock)
        {
            RefillLocked(_time.GetTimestamp());
            if (_local < -Epsilon)
            {
                retryAfter = RetryAfterLocked();
                return false;
            }
            ChargeLocked(baseCost);
            retryAfter = TimeSpan.Zero;
            return true;
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
            if (ru <= 0)
                return;
            _leased += ru;
            var until = now + ToTimestampTicks(validFor);
            if (until > _leaseValidUntil)
                _leaseValidUntil = until;
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
