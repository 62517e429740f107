using System.Collections.Immutable;
using System.Diagnostics.CodeAnalysis;
using Microsoft.Extensions.Logging;
using MProxy.Edge.Configuration;

namespace MProxy.Edge.Backends;

/// <summary>A change of primary, as <see cref="BackendMonitor.PrimaryChanged"/> reports it.</summary>
/// <param name="Previous">The primary before (null: there was none); pools to it must be closed.</param>
/// <param name="Current">The primary now (null: none until a host is promoted or recovers).</param>
/// <param name="Epoch">The new <see cref="BackendTopology.PrimaryEpoch"/>.</param>
public sealed record PrimaryChange(BackendStatus? Previous, BackendStatus? Current, long Epoch);

/// <summary>No usable primary appeared within <see cref="BackendsConfig.FailoverWait"/>; the session answers 57P03.</summary>
public sealed class BackendUnavailableException(string database, string message) : Exception(message)
{
    public string Database { get; } = database;
}

/// <summary>
/// Health checks and topology of one database's hosts. Every <see cref="BackendsConfig.HealthCheckInterval"/>
/// it probes every host through <see cref="IBackendProbe"/> (all at once, each bounded by
/// <see cref="BackendsConfig.HealthCheckTimeout"/>), feeds each host's <see cref="CircuitBreaker"/>,
/// decides which host is the primary, measures each replica's lag, and publishes an immutable
/// <see cref="BackendTopology"/> by swapping one reference.
/// </summary>
/// <remarks>
/// <para><b>Loop.</b> Its own loop on the injected <see cref="TimeProvider"/> (<see cref="Start"/>), not a
/// janitor task: probes are asynchronous I/O and the interval is per database. Tests and
/// simulations call <see cref="ProbeOnceAsync"/> instead; rounds never overlap. A host whose breaker
/// is open is not probed until its cooldown is over; its next probe is the breaker's trial.</para>
/// <para><b>Choosing the primary</b> (never two at once): a host <i>claims</i> to be primary when its
/// last successful probe said <c>pg_is_in_recovery() = false</c> (in static mode the configured
/// primary claims it until probed) and its breaker is closed. The current primary stays while it
/// claims, unless another claimant reports a strictly higher timeline (a promotion after which the
/// old primary is still running). Otherwise the claimant with the highest timeline wins, then the
/// highest WAL position, then the first configured. Other claimants are
/// <see cref="BackendRole.StalePrimary"/> and get no traffic. No claimant: no primary, and
/// <see cref="WaitForPrimaryAsync"/> waits for one.</para>
/// <para><b>Lag</b> is measured against the primary's WAL positions as the monitor saw them
/// (<see cref="WalHistory"/>): bytes behind the primary's last position, and for how long the primary
/// has had WAL the replica has not replayed. A replica above either bound, or whose breaker is not
/// closed, leaves <see cref="BackendTopology.ReadReplicas"/> until it is back within bounds.</para>
/// <para><b>Threads.</b> <see cref="Current"/> is read without locks. Rounds, connect reports (any
/// thread) and breaker changes update state under one lock and publish under a second one, so
/// snapshots and events come out in order. Event handlers run on the publishing thread, must be
/// quick and must not block on other threads.</para>
/// </remarks>
public sealed class BackendMonitor : IAsyncDisposable
{
    private readonly Lock _lock = new();      // trackers, history, signal
    private readonly Lock _publishGate = new(); // one publication (and its events) at a time
    private readonly SemaphoreSlim _roundGate = new(1, 1);
    private readonly string _database;
    private readonly BackendsConfig _config;
    private readonly IBackendProbe _probe;
    private readonly TimeProvider _time;
    private readonly ILogger _log;
    private readonly Tracker[] _trackers;
    private readonly CircuitBreaker[] _breakers;
    private readonly WalHistory _history;
    private int _historyOwner = -1;
    private long _generation;
    private volatile BackendTopology _current;
    private TaskCompletionSource _published = NewSignal();
    private CancellationTokenSource? _stop;
    private Task? _loop;
    private bool _disposed;

    public BackendMonitor(string database, BackendsConfig config, IBackendProbe probe, TimeProvider time, ILogger log)
    {
        _database = database;
        _config = config;
        _probe = probe;
        _time = time;
        _log = log;
        var seed = config.Seed ?? StableSeed(database);
        _trackers = new Tracker[config.Hosts.Count];
        _breakers = new CircuitBreaker[config.Hosts.Count];
        for (var i = 0; i < _trackers.Length; i++)
        {
            _trackers[i] = new Tracker(config.Hosts[i], assumedPrimary: config.Mode == TopologyMode.Static && i == 0);
            _breakers[i] = new CircuitBreaker(i, config.Breaker, time, new Random(unchecked((seed * 31) + i + 1)));
            _breakers[i].StateChanged += OnBreakerChanged;
        }
        var samples = config.MaxReplicaLag is { } bound ? (int)Math.Ceiling(bound / config.HealthCheckInterval) + 4 : 8;
        _history = new WalHistory(Math.Clamp(samples, 8, 4096));
        lock (_lock)
            _current = BuildLocked(ChoosePrimaryLocked(-1), primaryEpoch: 0);
    }

    public string Database => _database;

    public BackendsConfig Config => _config;

    /// <summary>The latest snapshot. Read it once per decision and use that object throughout.</summary>
    public BackendTopology Current => _current;

    /// <summary>The breaker of each host, by index (state for a metric: <see cref="CircuitBreaker.State"/>).</summary>
    public IReadOnlyList<CircuitBreaker> Breakers => _breakers;

    /// <summary>Raised after every publication (each round, each breaker change).</summary>
    public event Action<BackendTopology>? TopologyChanged;

    /// <summary>Raised when the primary changes (to another host or to none): close the pools of <see cref="PrimaryChange.Previous"/>.</summary>
    public event Action<PrimaryChange>? PrimaryChanged;

    /// <summary>Raised on every breaker transition of any host (for metrics; an opened breaker's idle pool connections are likely dead).</summary>
    public event Action<BreakerTransition>? BreakerChanged;

    /// <summary>Starts the probing loop; the first round runs at once.</summary>
    public void Start()
    {
        lock (_lock)
        {
            if (_stop is not null || _disposed)
                throw new InvalidOperationException("the monitor is already started");
            _stop = new CancellationTokenSource();
        }
        BackendsLog.MonitorStarted(_log, _database, _trackers.Length, _config.Mode, _config.HealthCheckInterval.TotalMilliseconds);
        _loop = RunAsync(_stop.Token);
    }

    private async Task RunAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            var started = _time.GetTimestamp();
            try
            {
                await ProbeOnceAsync(stoppingToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                break;
            }
            catch (Exception e)
            {
                BackendsLog.RoundFailed(_log, _database, e);
            }
            var delay = _config.HealthCheckInterval - _time.GetElapsedTime(started);
            try
            {
                if (delay > TimeSpan.Zero)
                    await Task.Delay(delay, _time, stoppingToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                break;
            }
        }
    }

    /// <summary>One round: probes every host whose breaker allows it, applies the results, publishes a snapshot.</summary>
    public async Task ProbeOnceAsync(CancellationToken cancellationToken)
    {
        await _roundGate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var pending = new Task<ProbeOutcome>?[_trackers.Length];
            for (var i = 0; i < _trackers.Length; i++)
            {
                var tracker = _trackers[i];
                if (tracker.Running is { IsCompleted: false })
                    pending[i] = Task.FromResult(new ProbeOutcome(BackendProbeResult.Failed("the previous health check has not finished"), _time.GetTimestamp(), _time.GetUtcNow()));
                else if (_breakers[i].TryBeginTrial())
                    pending[i] = ProbeOneAsync(tracker, cancellationToken);
            }
            var outcomes = new ProbeOutcome?[_trackers.Length];
            for (var i = 0; i < pending.Length; i++)
                if (pending[i] is { } task)
                    outcomes[i] = await task.ConfigureAwait(false);
            cancellationToken.ThrowIfCancellationRequested();

            lock (_lock)
            {
                for (var i = 0; i < outcomes.Length; i++)
                    if (outcomes[i] is { } outcome)
                        _trackers[i].Apply(outcome);
            }
            for (var i = 0; i < outcomes.Length; i++)
            {
                if (outcomes[i] is not { } outcome)
                    continue;
                if (outcome.Result.Succeeded)
                {
                    _breakers[i].RecordSuccess();
                }
                else
                {
                    BackendsLog.ProbeFailed(_log, _database, _trackers[i].Endpoint.ToString(), outcome.Result.Error!);
                    _breakers[i].RecordFailure(outcome.Result.Error!);
                }
            }
            Publish();
        }
        finally
        {
            _roundGate.Release();
        }
    }

    private async Task<ProbeOutcome> ProbeOneAsync(Tracker tracker, CancellationToken cancellationToken)
    {
        using var timeout = new CancellationTokenSource(_config.HealthCheckTimeout, _time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
        BackendProbeResult result;
        try
        {
            var probe = _probe.ProbeAsync(tracker.Endpoint, linked.Token).AsTask();
            tracker.Running = probe;
            // WaitAsync: a probe that ignores its token still cannot hold up the round.
            result = await probe.WaitAsync(linked.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (timeout.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            result = BackendProbeResult.Failed($"no answer within {_config.HealthCheckTimeout.TotalMilliseconds:0} ms");
        }
        catch (Exception e) when (!cancellationToken.IsCancellationRequested)
        {
            result = BackendProbeResult.Failed(e.Message);
        }
        return new ProbeOutcome(result, _time.GetTimestamp(), _time.GetUtcNow());
    }

    /// <summary>
    /// A pool failed to connect to (or log in to) host <paramref name="backend"/> for a reason that
    /// says the host is unwell (refused, timed out, shutting down) — not for a wrong password or a full
    /// server. Counts toward opening its breaker.
    /// </summary>
    public void ReportConnectFailure(int backend, string reason) => _breakers[backend].RecordFailure(reason);

    /// <summary>A pool connected to host <paramref name="backend"/>: resets its consecutive failures (and wakes primary waiters).</summary>
    public void ReportConnectSuccess(int backend)
    {
        var breaker = _breakers[backend];
        if (breaker.ConsecutiveFailures == 0)
            return;
        breaker.RecordSuccess();
        TaskCompletionSource signal;
        lock (_lock)
        {
            signal = _published;
            _published = NewSignal();
        }
        signal.TrySetResult();
    }

    /// <summary>
    /// Returns the primary once there is a usable one — in the snapshot, breaker closed, and no failure
    /// since its last success — waiting at most <see cref="BackendsConfig.FailoverWait"/>. Completes
    /// synchronously when the primary is usable already.
    /// </summary>
    /// <remarks>
    /// Call it when <see cref="RouteDecider"/> answers <see cref="RouteTarget.WaitForPrimary"/>, and
    /// after reporting a failed connect to the primary: it then waits for the next successful probe or
    /// for another host to take over, instead of failing the client at once.
    /// </remarks>
    /// <exception cref="BackendUnavailableException">no usable primary within the wait.</exception>
    public ValueTask<BackendStatus> WaitForPrimaryAsync(CancellationToken cancellationToken) =>
        TryGetUsablePrimary(out var primary) ? new ValueTask<BackendStatus>(primary) : WaitForPrimarySlowAsync(cancellationToken);

    /// <summary>
    /// The synchronous core of <see cref="WaitForPrimaryAsync"/>: the primary when there is a usable
    /// one now (in the snapshot, breaker closed, no failure since its last success). A simulation
    /// waits on <see cref="TopologyChanged"/> and its own clock instead of the asynchronous wait.
    /// </summary>
    public bool TryGetUsablePrimary([NotNullWhen(true)] out BackendStatus? primary)
    {
        var topology = _current;
        primary = IsUsable(topology) ? topology.Primary : null;
        return primary is not null;
    }

    private async ValueTask<BackendStatus> WaitForPrimarySlowAsync(CancellationToken cancellationToken)
    {
        var started = _time.GetTimestamp();
        while (true)
        {
            Task signal;
            lock (_lock)
                signal = _published.Task;
            if (TryGetUsablePrimary(out var primary))
                return primary;
            var remaining = _config.FailoverWait - _time.GetElapsedTime(started);
            if (remaining <= TimeSpan.Zero)
            {
                BackendsLog.PrimaryWaitTimedOut(_log, _database, _config.FailoverWait.TotalMilliseconds);
                throw new BackendUnavailableException(_database,
                    $"mproxy: no primary of database \"{_database}\" is available (waited {_config.FailoverWait.TotalMilliseconds:0} ms; a failover may be in progress); retry in a few seconds");
            }
            try
            {
                await signal.WaitAsync(remaining, _time, cancellationToken).ConfigureAwait(false);
            }
            catch (TimeoutException)
            {
                // checked at the top of the loop
            }
        }
    }

    private bool IsUsable(BackendTopology topology)
    {
        if (!topology.HasUsablePrimary)
            return false;
        var breaker = _breakers[topology.PrimaryIndex];
        return breaker.State == BreakerState.Closed && breaker.ConsecutiveFailures == 0;
    }

    private void OnBreakerChanged(BreakerTransition change)
    {
        var endpoint = _trackers[change.Backend].Endpoint.ToString();
        switch (change.To)
        {
            case BreakerState.Open:
                BackendsLog.BreakerOpened(_log, _database, endpoint, _breakers[change.Backend].ConsecutiveFailures, change.Trips, change.Cooldown.TotalMilliseconds, change.Reason);
                break;
            case BreakerState.HalfOpen:
                BackendsLog.BreakerHalfOpen(_log, _database, endpoint);
                break;
            default:
                BackendsLog.BreakerClosed(_log, _database, endpoint, change.Reason);
                break;
        }
        BreakerChanged?.Invoke(change);
        Publish();
    }

    /// <summary>Builds and swaps in a new snapshot, then logs what changed and raises the events.</summary>
    private void Publish()
    {
        lock (_publishGate)
        {
            BackendTopology previous, next;
            TaskCompletionSource signal;
            lock (_lock)
            {
                previous = _current;
                var primary = ChoosePrimaryLocked(previous.PrimaryIndex);
                next = BuildLocked(primary, primary == previous.PrimaryIndex ? previous.PrimaryEpoch : previous.PrimaryEpoch + 1);
                _current = next;
                signal = _published;
                _published = NewSignal();
            }
            signal.TrySetResult();
            LogChanges(previous, next);
            TopologyChanged?.Invoke(next);
            if (next.PrimaryIndex != previous.PrimaryIndex)
                PrimaryChanged?.Invoke(new PrimaryChange(previous.Primary, next.Primary, next.PrimaryEpoch));
        }
    }

    private void LogChanges(BackendTopology previous, BackendTopology next)
    {
        if (next.PrimaryIndex != previous.PrimaryIndex)
        {
            var was = previous.Primary?.Endpoint.ToString() ?? "none";
            if (next.Primary is { } primary)
                BackendsLog.PrimaryChanged(_log, _database, primary.Endpoint.ToString(), was, next.PrimaryEpoch);
            else
                BackendsLog.PrimaryLost(_log, _database, was, next.PrimaryEpoch, _config.FailoverWait.TotalMilliseconds);
        }
        for (var i = 0; i < next.Backends.Length; i++)
        {
            var before = previous.Backends[i];
            var after = next.Backends[i];
            // A stale primary is worth a warning while it is up and another host is the primary (not when it just died).
            if (IsLiveStalePrimary(after, next) && !IsLiveStalePrimary(before, previous))
                BackendsLog.StalePrimary(_log, _database, after.Endpoint.ToString(), after.Timeline, next.Primary?.Endpoint.ToString() ?? "none", next.Primary?.Timeline ?? 0);
            var lagBefore = before.Eligibility is ReadEligibility.LagBytes or ReadEligibility.LagTime;
            var lagAfter = after.Eligibility is ReadEligibility.LagBytes or ReadEligibility.LagTime;
            if (lagAfter && !lagBefore)
                BackendsLog.ReplicaEjected(_log, _database, after.Endpoint.ToString(), after.Eligibility, after.LagBytes, after.LagTime?.TotalMilliseconds);
            else if (lagBefore && after.ServesReads)
                BackendsLog.ReplicaAdmitted(_log, _database, after.Endpoint.ToString(), after.LagBytes, after.LagTime?.TotalMilliseconds);
        }
    }

    private static bool IsLiveStalePrimary(BackendStatus backend, BackendTopology topology) =>
        backend.Role == BackendRole.StalePrimary && backend.Breaker == BreakerState.Closed && topology.PrimaryIndex >= 0;

    /// <summary>The primary rule (see the class remarks). Called under the lock.</summary>
    private int ChoosePrimaryLocked(int current)
    {
        if (current >= 0 && Claims(current))
        {
            var keep = current;
            var timeline = _trackers[current].Timeline;
            for (var i = 0; i < _trackers.Length; i++)
            {
                if (i != current && Claims(i) && timeline != 0 && _trackers[i].Timeline > _trackers[keep].Timeline)
                    keep = i;
            }
            return keep;
        }
        var best = -1;
        for (var i = 0; i < _trackers.Length; i++)
        {
            if (!Claims(i))
                continue;
            if (best < 0)
            {
                best = i;
                continue;
            }
            var a = _trackers[i];
            var b = _trackers[best];
            if (a.Timeline > b.Timeline || (a.Timeline == b.Timeline && a.Lsn > b.Lsn))
                best = i;
        }
        return best;
    }

    private bool Claims(int i) => _trackers[i].ClaimsPrimary && _breakers[i].State == BreakerState.Closed;

    /// <summary>Builds a snapshot with <paramref name="primary"/> as the primary. Called under the lock.</summary>
    private BackendTopology BuildLocked(int primary, long primaryEpoch)
    {
        if (primary != _historyOwner)
        {
            _history.Clear();
            _historyOwner = primary;
        }
        if (primary >= 0 && _trackers[primary] is { HasResult: true, Last.InRecovery: false } p)
            _history.Add(p.Last.Lsn, p.SeenAt);

        var statuses = ImmutableArray.CreateBuilder<BackendStatus>(_trackers.Length);
        var readers = ImmutableArray.CreateBuilder<int>();
        for (var i = 0; i < _trackers.Length; i++)
        {
            var t = _trackers[i];
            var breaker = _breakers[i];
            var role = i == primary ? BackendRole.Primary
                : t.HasResult && !t.Last.InRecovery ? BackendRole.StalePrimary
                : t.HasResult ? BackendRole.Replica
                : BackendRole.Unknown;
            long? lagBytes = null;
            TimeSpan? lagTime = null;
            if (role == BackendRole.Replica)
            {
                lagBytes = _history.LagBytes(t.Last.Lsn);
                lagTime = _history.LagTime(t.Last.Lsn, t.SeenAt, _time);
            }
            var eligibility = role != BackendRole.Replica && role != BackendRole.Unknown ? ReadEligibility.NotReplica
                : !t.HasResult ? ReadEligibility.NotProbed
                : breaker.State != BreakerState.Closed ? ReadEligibility.BreakerOpen
                : _config.MaxReplicaLagBytes is { } maxBytes && lagBytes > maxBytes ? ReadEligibility.LagBytes
                : _config.MaxReplicaLag is { } maxTime && lagTime >= maxTime ? ReadEligibility.LagTime
                : ReadEligibility.Eligible;
            statuses.Add(new BackendStatus
            {
                Index = i,
                Endpoint = t.Endpoint,
                Role = role,
                Breaker = breaker.State,
                ConsecutiveFailures = breaker.ConsecutiveFailures,
                Reachable = t.Reachable,
                LastError = t.LastError,
                LastSeenAt = t.HasResult ? t.SeenAtUtc : null,
                Lsn = t.Last.Lsn,
                ReceiveLsn = t.Last.ReceiveLsn,
                Timeline = t.Last.Timeline,
                LagBytes = lagBytes,
                LagTime = lagTime,
                ReplayAge = t.Last.ReplayAge,
                Eligibility = eligibility,
            });
            if (eligibility == ReadEligibility.Eligible)
                readers.Add(i);
        }
        return new BackendTopology(++_generation, primaryEpoch, primary, statuses.MoveToImmutable(), readers.ToImmutable(), _time.GetUtcNow());
    }

    /// <summary>Stops the loop (waiting for the round in progress). Primary waiters are not failed: their wait is bounded.</summary>
    public async ValueTask DisposeAsync()
    {
        CancellationTokenSource? stop;
        lock (_lock)
        {
            stop = _stop;
            if (stop is null || _disposed)
                return;
            _disposed = true;
        }
        await stop.CancelAsync().ConfigureAwait(false);
        if (_loop is { } loop)
        {
            try
            {
                await loop.ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
            }
        }
        stop.Dispose();
        BackendsLog.MonitorStopped(_log, _database);
    }

    private static TaskCompletionSource NewSignal() => new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>A seed that is the same on every run and machine for the same database name (FNV-1a).</summary>
    internal static int StableSeed(string text)
    {
        var hash = 2166136261u;
        foreach (var c in text)
            hash = (hash ^ c) * 16777619u;
        return unchecked((int)hash);
    }

    private readonly record struct ProbeOutcome(BackendProbeResult Result, long At, DateTimeOffset AtUtc);

    /// <summary>What the monitor knows of one host (mutated under the monitor's lock; <see cref="Running"/> by the round only).</summary>
    private sealed class Tracker(HostPort endpoint, bool assumedPrimary)
    {
        public HostPort Endpoint { get; } = endpoint;

        /// <summary>The last successful probe's result.</summary>
        public BackendProbeResult Last { get; private set; }

        public bool HasResult { get; private set; }

        public long SeenAt { get; private set; }

        public DateTimeOffset SeenAtUtc { get; private set; }

        public bool Reachable { get; private set; }

        public string? LastError { get; private set; }

        public Task? Running { get; set; }

        public uint Timeline => HasResult ? Last.Timeline : 0;

        public Lsn Lsn => HasResult ? Last.Lsn : Lsn.None;

        /// <summary>Says it is not in recovery (or, never probed, is the configured primary in static mode).</summary>
        public bool ClaimsPrimary => HasResult ? !Last.InRecovery : assumedPrimary;

        public void Apply(ProbeOutcome outcome)
        {
            if (outcome.Result.Succeeded)
            {
                Last = outcome.Result;
                HasResult = true;
                SeenAt = outcome.At;
                SeenAtUtc = outcome.AtUtc;
                Reachable = true;
                LastError = null;
            }
            else
            {
                Reachable = false;
                LastError = outcome.Result.Error;
            }
        }
    }
}
