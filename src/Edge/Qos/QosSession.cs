using MProxy.Abstractions;
using MProxy.Abstractions.ResourceUnits;
using MProxy.Edge.Routing;

namespace MProxy.Edge.Qos;

/// <summary>The admission decision for one statement.</summary>
internal readonly struct QosAdmission
{
    /// <summary>Why the statement was refused; <see cref="QosRejection.IsRejected"/> is false when admitted.</summary>
    public QosRejection Rejection { get; init; }

    public bool IsAdmitted => !Rejection.IsRejected;

    /// <summary>Priority the statement runs (and waits for a slot) at.</summary>
    public Priority Priority { get; init; }

    /// <summary>Statement timeout to enforce; <see cref="TimeSpan.Zero"/> for none.</summary>
    public TimeSpan StatementTimeout { get; init; }

    /// <summary>The group the statement runs in (its server settings apply); null when QoS is off.</summary>
    public ResourceGroupConfig? Group { get; init; }

    /// <summary>A dry-run or shadow verdict matched: what it would have done is for the log.</summary>
    public RunawayVerdict? Reported { get; init; }

    /// <summary>Refused for budget, but still within the group's budget wait (<c>maxBudgetWaitMs</c>): <see cref="QosSession.RetryBudget"/> after <see cref="QosRejection.RetryAfter"/>.</summary>
    public bool MayWait { get; init; }
}

/// <summary>The result of waiting for a server slot.</summary>
internal readonly struct QosSlotResult
{
    public QosRejection Rejection { get; init; }

    public bool IsGranted => !Rejection.IsRejected;

    public TimeSpan Waited { get; init; }
}

/// <summary>A charge tick: whether the running statement must be cancelled now (runaway), and any rule that fired.</summary>
internal readonly struct QosTick
{
    /// <summary>Send a cancel to the server and answer the client with this (SQLSTATE 57014).</summary>
    public QosRejection Cancel { get; init; }

    public bool MustCancel => Cancel.IsRejected;

    public RunawayHit Hit { get; init; }

    /// <summary>RU charged by this tick.</summary>
    public double Ru { get; init; }
}

/// <summary>What a finished statement cost.</summary>
internal readonly struct QosCompletion
{
    public double Ru { get; init; }

    public TimeSpan Elapsed { get; init; }

    /// <summary>A rule its final cost triggered (a verdict for later executions).</summary>
    public RunawayHit Hit { get; init; }

    /// <summary>Whether a runaway rule asked for it to be cancelled.</summary>
    public bool Cancelled { get; init; }
}

/// <summary>Receives runaway hits that <see cref="QosGate.Tick"/> finds on running statements.</summary>
internal interface IRunawayTarget
{
    /// <summary>
    /// A rule fired for the session's running statement; when <paramref name="cancel"/> is a
    /// rejection, cancel the statement on the server and answer the client with it. Called from the
    /// janitor's thread: must not block, and must not call back into the gate.
    /// </summary>
    void OnRunaway(QosSession session, RunawayHit hit, QosRejection cancel);
}

/// <summary>
/// The QoS state of one client session and the calls it makes per statement:
/// <code>
/// Admit/AdmitAsync → (AcquireSlotAsync, unless a slot is already held) → Start
///   → AddBytes … / Tick (janitor) … → Complete → (ReleaseSlot at the transaction boundary)
/// </code>
/// Knows nothing of any wire protocol: refusals are <see cref="QosRejection"/> values.
/// </summary>
/// <remarks>
/// One statement at a time: a new <see cref="Admit"/> completes a statement left running.
/// Per-statement calls come from the session's own task; <see cref="Tick"/> may come concurrently
/// from the janitor, and <see cref="AddBytes"/> from the relay — a private lock (uncontended but for
/// the janitor) and interlocked byte counters keep that safe. The per-statement path does not
/// allocate in steady state: waiting (budget or slot) is the only path that does.
/// </remarks>
internal sealed class QosSession : IDisposable
{
    /// <summary>Retry-after suggested when a slot wait times out or the scheduler is closing.</summary>
    public static readonly TimeSpan QueueRetryAfter = TimeSpan.FromSeconds(1);

    /// <summary>The longest a statement waiting for budget sleeps before it tries the bucket again.</summary>
    internal static readonly TimeSpan BudgetRecheck = TimeSpan.FromMilliseconds(200);

    private readonly QosGate _gate;
    private readonly Lock _sync = new();
    private StatementState _state;
    private bool _bypass;
    private TenantAccount? _account;
    private Priority _priority;
    private TimeSpan _timeout;
    private ulong _fingerprint;
    private RuKind _kind;
    private double _base;
    private long _budgetWaitStarted;
    private RuBudgetTicket? _ticket;
    private RuMeter _meter;
    private long _startedAt;
    private long _bytesRead;
    private long _bytesWritten;
    private ulong _fired;
    private RunawayVerdict? _throttle;
    private bool _cancelRequested;
    private SchedulerSlot _slot;
    private double _slotRu;
    private bool _disposed;

    internal QosSession(QosGate gate, TenantQos tenant, IRunawayTarget? target)
    {
        _gate = gate;
        Tenant = tenant;
        Target = target;
    }

    private enum StatementState
    {
        Idle,
        PendingBudget,
        Admitted,
        Running,
    }

    public TenantQos Tenant { get; }

    internal IRunawayTarget? Target { get; }

    /// <summary>Index in the gate's session list; owned by the gate.</summary>
    internal int RegistryIndex { get; set; } = -1;

    public bool HoldsSlot
    {
        get
        {
            lock (_sync)
                return _slot.IsHeld;
        }
    }

    public bool IsRunning
    {
        get
        {
            lock (_sync)
                return _state == StatementState.Running;
        }
    }

    /// <summary>
    /// Admits a statement: applies its hints (<see cref="QosConfig.HintPolicy"/>), checks runaway
    /// verdicts for its fingerprint, and takes its base cost from the tenant's bucket. Inside an open
    /// transaction (<paramref name="inTransaction"/>) the budget and throttles are charged but never
    /// refuse, so that a transaction is not broken half-way; a cancel verdict still refuses.
    /// </summary>
    public QosAdmission Admit(in QueryHints hints, ulong fingerprint, RuKind kind, bool inTransaction)
    {
        lock (_sync)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_state is StatementState.Admitted or StatementState.Running)
                CompleteLocked();
            else if (_state == StatementState.PendingBudget)
                EndStatementLocked();

            var snapshot = _gate.Snapshot;
            if (!snapshot.Config.Enabled)
            {
                _bypass = true;
                _state = StatementState.Admitted;
                return new QosAdmission { Priority = Priority.Medium };
            }
            _bypass = false;
            var profile = Tenant.Profile;
            var decision = snapshot.HintPolicy.Apply(hints, profile.Groups);
            var account = profile.Accounts[decision.Group];
            var group = account.Group;
            _account = account;
            _priority = decision.Priority;
            _timeout = decision.Timeout;
            _fingerprint = fingerprint;
            _kind = kind;
            _base = snapshot.Config.Weights.BaseOf(kind);
            _throttle = null;

            var runaway = _gate.Runaway.Admit(Tenant.Id, fingerprint, _base, enforceThrottle: !inTransaction);
            if (runaway.Effect == RunawayEffect.None && _gate.TryImportVerdict(Tenant, fingerprint))
                runaway = _gate.Runaway.Admit(Tenant.Id, fingerprint, _base, enforceThrottle: !inTransaction);
            RunawayVerdict? reported = null;
            switch (runaway.Effect)
            {
                case RunawayEffect.Reject:
                    account.CountRunawayRefused();
                    _gate.Policy.Usage?.RecordRefused(Tenant.Name, _base, shed: false);
                    _account = null;
                    return new QosAdmission
                    {
                        Group = group,
                        Priority = _priority,
                        Rejection = new QosRejection
                        {
                            Reason = runaway.RejectReason,
                            Tenant = Tenant.Name,
                            Group = group.Name,
                            Priority = _priority,
                            RetryAfter = runaway.RetryAfter,
                            Rule = runaway.Verdict!.Rule,
                            Fingerprint = fingerprint,
                            Limit = runaway.Limit,
                            Unit = runaway.Unit,
                        },
                    };
                case RunawayEffect.Deprioritize:
                    _priority = Priorities.Lower(_priority, runaway.Priority);
                    break;
                case RunawayEffect.Throttled:
                    _throttle = runaway.Verdict;
                    break;
                case RunawayEffect.Report:
                    reported = runaway.Verdict;
                    break;
            }

            if (inTransaction)
            {
                account.Charge(_base);
                _gate.Policy.Usage?.RecordAdmitted(Tenant.Name, _base);
            }
            else if (!account.Bucket.TryAdmitOrQueue(_base, group.MaxBudgetWait, out var retryAfter, out _ticket))
            {
                // Given a ticket, the statement waits in line (its turn comes within its allowance).
                var mayWait = _ticket is not null;
                if (mayWait)
                {
                    _state = StatementState.PendingBudget;
                    _budgetWaitStarted = _gate.Time.GetTimestamp();
                    account.CountBudgetWait();
                    _gate.Policy.Usage?.RecordBudgetWait(Tenant.Name);
                }
                else
                {
                    account.CountBudgetRefused();
                    _gate.Policy.Usage?.RecordRefused(Tenant.Name, _base, shed: false);
                    EndStatementLocked();
                }
                return BudgetRefusal(account, group, retryAfter, mayWait, TimeSpan.Zero, reported);
            }
            else
            {
                account.CountCharged(_base);
                _gate.Policy.Usage?.RecordAdmitted(Tenant.Name, _base);
            }
            account.CountAdmitted();
            _state = StatementState.Admitted;
            return new QosAdmission { Group = group, Priority = _priority, StatementTimeout = _timeout, Reported = reported };
        }
    }

    /// <summary>
    /// <see cref="Admit"/>, waiting out a short debt (up to the group's <c>maxBudgetWaitMs</c>) on the
    /// gate's clock instead of refusing. Waiters are admitted in the order they arrived (the bucket's
    /// line, <see cref="RuBudgetTicket"/>). Completes synchronously when no wait is needed.
    /// </summary>
    public ValueTask<QosAdmission> AdmitAsync(QueryHints hints, ulong fingerprint, RuKind kind, bool inTransaction, CancellationToken cancellationToken)
    {
        var admission = Admit(hints, fingerprint, kind, inTransaction);
        if (admission.IsAdmitted || !admission.MayWait)
            return new ValueTask<QosAdmission>(admission);
        return WaitForBudgetAsync(admission, cancellationToken);
    }

    private async ValueTask<QosAdmission> WaitForBudgetAsync(QosAdmission admission, CancellationToken cancellationToken)
    {
        var ticket = _ticket!;
        try
        {
            while (true)
            {
                // The first in line sleeps until its estimated turn; the others until the bucket
                // wakes them (they become first). Both wait in slices, so a wake-up the statement
                // missed, or a rate that rose meanwhile, costs at most one slice; and none sleeps
                // past the end of its allowance.
                var retryAfter = admission.Rejection.RetryAfter;
                var wait = ticket.IsFirst && retryAfter < BudgetRecheck ? retryAfter : BudgetRecheck;
                var allowance = admission.Group!.MaxBudgetWait;
                var left = admission.Rejection.Waited < allowance ? allowance - admission.Rejection.Waited : TimeSpan.Zero;
                await ticket.WaitAsync(wait < left ? wait : left, _gate.Time, cancellationToken);
                admission = RetryBudget();
                if (admission.IsAdmitted || !admission.MayWait)
                    return admission;
            }
        }
        catch (OperationCanceledException)
        {
            lock (_sync)
                if (_state == StatementState.PendingBudget)
                    EndStatementLocked();
            throw;
        }
    }

    /// <summary>
    /// Tries the bucket again for a statement that <see cref="Admit"/> left waiting for budget
    /// (<see cref="QosAdmission.MayWait"/>); the synchronous core of <see cref="AdmitAsync"/>.
    /// </summary>
    public QosAdmission RetryBudget()
    {
        lock (_sync)
        {
            if (_state != StatementState.PendingBudget || _account is not { } account)
                throw new InvalidOperationException("no statement is waiting for budget");
            var group = account.Group;
            var ticket = _ticket ?? throw new InvalidOperationException("a statement waiting for budget has its place in line");
            if (ticket.Bucket.TryAdmit(ticket, _base, out var retryAfter))
            {
                _ticket = null;
                account.CountCharged(_base);
                _gate.Policy.Usage?.RecordAdmitted(Tenant.Name, _base);
                account.CountAdmitted();
                _state = StatementState.Admitted;
                return new QosAdmission { Group = group, Priority = _priority, StatementTimeout = _timeout };
            }
            // The statement was promised up to maxBudgetWaitMs of waiting: it is refused when that
            // time is up, not when the wait projected now (which other statements' charges push up
            // and their repayment brings down) would overrun it.
            var waited = _gate.Time.GetElapsedTime(_budgetWaitStarted);
            var mayWait = waited < group.MaxBudgetWait;
            if (!mayWait)
            {
                account.CountBudgetRefused();
                _gate.Policy.Usage?.RecordRefused(Tenant.Name, _base, shed: false);
                EndStatementLocked();
            }
            return BudgetRefusal(account, group, retryAfter, mayWait, waited, null);
        }
    }

    private QosAdmission BudgetRefusal(TenantAccount account, ResourceGroupConfig group, TimeSpan retryAfter, bool mayWait, TimeSpan waited, RunawayVerdict? reported) => new()
    {
        Group = group,
        Priority = _priority,
        MayWait = mayWait,
        Reported = reported,
        Rejection = new QosRejection
        {
            Reason = QosRejectReason.BudgetExhausted,
            Tenant = Tenant.Name,
            Group = group.Name,
            Priority = _priority,
            RetryAfter = retryAfter,
            Waited = waited,
            Limit = group.RuPerSecond,
            Observed = Math.Max(0, -account.Bucket.Balance),
            ExtraLimit = group.DebtMax,
        },
    };

    /// <summary>
    /// Waits for a slot of <paramref name="scheduler"/> (the pool's) at the admitted statement's
    /// priority, up to the group's queue timeout or else <paramref name="poolWaitTimeout"/>. Holding
    /// a slot already (inside a transaction), or with QoS off, it returns at once. Completes
    /// synchronously without allocating when a slot is free. On refusal the statement ends.
    /// </summary>
    public ValueTask<QosSlotResult> AcquireSlotAsync(QosScheduler scheduler, TimeSpan poolWaitTimeout, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(scheduler);
        SchedulerFlow flow;
        Priority priority;
        TimeSpan timeout;
        lock (_sync)
        {
            if (_state != StatementState.Admitted)
                throw new InvalidOperationException("acquire a slot for an admitted statement");
            if (_bypass || _slot.IsHeld)
                return new ValueTask<QosSlotResult>(default(QosSlotResult));
            var account = _account!;
            flow = account.FlowFor(scheduler);
            priority = _priority;
            timeout = account.Group.QueueTimeout > TimeSpan.Zero ? account.Group.QueueTimeout : poolWaitTimeout;
        }
        var pending = scheduler.AcquireAsync(flow, priority, timeout, cancellationToken);
        if (pending.IsCompletedSuccessfully)
            return new ValueTask<QosSlotResult>(OnSlot(pending.Result, scheduler));
        return AwaitSlotAsync(pending, scheduler);
    }

    /// <summary>
    /// The synchronous core of <see cref="AcquireSlotAsync"/>, for a simulation: takes a free slot
    /// at once (returns null; <paramref name="result"/> holds the outcome), or queues and returns the
    /// waiter. The driver ends a wait it gives up on with <see cref="QosScheduler.Cancel"/> and, once
    /// the waiter's <see cref="SchedulerWaiter.Outcome"/> is no longer pending, hands it to
    /// <see cref="EndSlotWait"/>.
    /// </summary>
    public SchedulerWaiter? BeginSlotWait(QosScheduler scheduler, out QosSlotResult result)
    {
        ArgumentNullException.ThrowIfNull(scheduler);
        SchedulerFlow flow;
        Priority priority;
        lock (_sync)
        {
            if (_state != StatementState.Admitted)
                throw new InvalidOperationException("acquire a slot for an admitted statement");
            result = default;
            if (_bypass || _slot.IsHeld)
                return null;
            flow = _account!.FlowFor(scheduler);
            priority = _priority;
        }
        if (scheduler.TryAcquire(flow, priority, out var slot))
        {
            result = OnSlot(new SlotGrant(WaitOutcome.Granted, slot, TimeSpan.Zero, TimeSpan.Zero), scheduler);
            return null;
        }
        var waiter = scheduler.Enqueue(flow, priority);
        if (waiter.Outcome == WaitOutcome.Pending)
            return waiter;
        result = EndSlotWait(waiter);
        return null;
    }

    /// <summary>Takes the outcome of a wait begun with <see cref="BeginSlotWait"/>.</summary>
    public QosSlotResult EndSlotWait(SchedulerWaiter waiter)
    {
        ArgumentNullException.ThrowIfNull(waiter);
        if (waiter.Outcome == WaitOutcome.Pending)
            throw new InvalidOperationException("the wait has not ended");
        return OnSlot(waiter.ToGrant(), waiter.Flow.Scheduler);
    }

    private async ValueTask<QosSlotResult> AwaitSlotAsync(ValueTask<SlotGrant> pending, QosScheduler scheduler)
    {
        SlotGrant grant;
        try
        {
            grant = await pending;
        }
        catch (OperationCanceledException)
        {
            lock (_sync)
                EndStatementLocked();
            throw;
        }
        return OnSlot(grant, scheduler);
    }

    private QosSlotResult OnSlot(SlotGrant grant, QosScheduler scheduler)
    {
        lock (_sync)
        {
            if (grant.IsGranted)
            {
                if (_state != StatementState.Admitted)
                {
                    // The statement ended while it waited (session closing): give the slot back.
                    scheduler.Release(grant.Slot, 0);
                    return default;
                }
                _slot = grant.Slot;
                _slotRu = 0;
                return new QosSlotResult { Waited = grant.Waited };
            }
            var account = _account;
            var group = account?.Group;
            var rejection = new QosRejection
            {
                Tenant = Tenant.Name,
                Group = group?.Name ?? "",
                Priority = _priority,
                Pool = scheduler.Name,
                Waited = grant.Waited,
            };
            switch (grant.Outcome)
            {
                case WaitOutcome.Shed:
                    account?.CountShed();
                    _gate.Policy.Usage?.RecordRefused(Tenant.Name, _base, shed: true);
                    rejection = rejection with { Reason = QosRejectReason.Shed, RetryAfter = grant.RetryAfter, Limit = scheduler.CoDel.Target.TotalMilliseconds, Unit = QosLimitUnit.Milliseconds };
                    break;
                case WaitOutcome.TimedOut:
                    account?.CountQueueTimeout();
                    rejection = rejection with { Reason = QosRejectReason.QueueTimeout, RetryAfter = QueueRetryAfter, Limit = scheduler.Capacity, Unit = QosLimitUnit.Queries };
                    break;
                case WaitOutcome.Canceled:
                    rejection = rejection with { Reason = QosRejectReason.Canceled };
                    break;
                default:
                    rejection = rejection with { Reason = QosRejectReason.Closed, RetryAfter = QueueRetryAfter };
                    break;
            }
            EndStatementLocked();
            return new QosSlotResult { Rejection = rejection, Waited = grant.Waited };
        }
    }

    /// <summary>
    /// The admitted statement starts running on a backend whose RU weights are
    /// <paramref name="weights"/>: latency is charged from now on.
    /// </summary>
    public void Start(RuWeights weights)
    {
        lock (_sync)
        {
            if (_state != StatementState.Admitted)
                throw new InvalidOperationException("start an admitted statement");
            _state = StatementState.Running;
            _startedAt = _gate.Time.GetTimestamp();
            Interlocked.Exchange(ref _bytesRead, 0);
            Interlocked.Exchange(ref _bytesWritten, 0);
            _fired = 0;
            _cancelRequested = false;
            if (_bypass)
                return;
            var meterBase = _meter.Start(weights, _kind);
            ChargeLocked(meterBase - _base);
            if (_slot.IsHeld)
                _slotRu += _base;
        }
    }

    /// <summary>Counts bytes relayed for the running statement (server → client read, client → server written). Thread-safe, lock-free.</summary>
    public void AddBytes(long read, long written)
    {
        if (read != 0)
            Interlocked.Add(ref _bytesRead, read);
        if (written != 0)
            Interlocked.Add(ref _bytesWritten, written);
    }

    /// <summary>
    /// Charges the running statement's latency and bytes so far and evaluates runaway rules on it.
    /// Called periodically (the janitor, via <see cref="QosGate.Tick"/>) while it runs.
    /// </summary>
    public QosTick Tick()
    {
        lock (_sync)
        {
            if (_state != StatementState.Running || _bypass)
                return default;
            var elapsed = _gate.Time.GetElapsedTime(_startedAt);
            var ru = _meter.Advance(elapsed, Volatile.Read(ref _bytesRead), Volatile.Read(ref _bytesWritten));
            ChargeLocked(ru);
            var hit = _gate.Runaway.Evaluate(Tenant.Id, Tenant.Name, _fingerprint, _meter.Charged, elapsed, final: false, ref _fired);
            if (!hit.Cancel || _cancelRequested)
                return new QosTick { Hit = hit, Ru = ru };
            _cancelRequested = true;
            _account!.CountRunawayCancelled();
            return new QosTick
            {
                Hit = hit,
                Ru = ru,
                Cancel = new QosRejection
                {
                    Reason = QosRejectReason.RunawayCanceled,
                    Tenant = Tenant.Name,
                    Group = _account.Group.Name,
                    Priority = _priority,
                    Rule = hit.Rule,
                    Fingerprint = _fingerprint,
                    Observed = hit.Observed,
                    Limit = hit.Limit,
                    Unit = hit.Unit,
                    RetryAfter = hit.Rule!.Watch,
                },
            };
        }
    }

    /// <summary>
    /// The statement finished (or failed, or was cancelled): charges what it accrued since the last
    /// tick, evaluates the rules on its final cost and records its fingerprint's statistics. Keeps
    /// the slot (release it at the transaction boundary with <see cref="ReleaseSlot"/>).
    /// </summary>
    public QosCompletion Complete()
    {
        lock (_sync)
            return CompleteLocked();
    }

    private QosCompletion CompleteLocked()
    {
        if (_state == StatementState.Admitted)
        {
            var notRun = new QosCompletion { Ru = _bypass ? 0 : _base };
            EndStatementLocked();
            return notRun;
        }
        if (_state != StatementState.Running)
            return default;
        var elapsed = _gate.Time.GetElapsedTime(_startedAt);
        if (_bypass)
        {
            EndStatementLocked();
            return new QosCompletion { Elapsed = elapsed };
        }
        ChargeLocked(_meter.Advance(elapsed, Volatile.Read(ref _bytesRead), Volatile.Read(ref _bytesWritten)));
        var hit = _gate.Runaway.Evaluate(Tenant.Id, Tenant.Name, _fingerprint, _meter.Charged, elapsed, final: true, ref _fired);
        var total = _meter.Stop();
        _gate.Fingerprints.Record(Tenant.Id, Tenant.Name, _fingerprint, total, elapsed.TotalMilliseconds);
        _gate.Policy.Usage?.RecordExecution(Tenant.Name, _fingerprint, total, elapsed.TotalMilliseconds);
        var completion = new QosCompletion { Ru = total, Elapsed = elapsed, Hit = hit, Cancelled = _cancelRequested };
        EndStatementLocked();
        return completion;
    }

    /// <summary>Hands the slot back with the RU of every statement run in it (at the transaction boundary, or after each statement outside transaction pooling).</summary>
    public void ReleaseSlot()
    {
        SchedulerSlot slot;
        double ru;
        lock (_sync)
        {
            if (!_slot.IsHeld)
                return;
            slot = _slot;
            ru = _slotRu;
            _slot = default;
            _slotRu = 0;
        }
        slot.Flow!.Scheduler.Release(slot, ru);
    }

    /// <summary>Completes a running statement, releases the slot and leaves the gate.</summary>
    public void Dispose()
    {
        lock (_sync)
        {
            if (_disposed)
                return;
            _disposed = true;
            CompleteLocked();
            if (_state == StatementState.PendingBudget)
                EndStatementLocked();
        }
        ReleaseSlot();
        _gate.Unregister(this);
    }

    /// <summary>Charges the statement's account (and its throttle's rate) and counts the RU toward the held slot.</summary>
    private void ChargeLocked(double ru)
    {
        if (!(ru > 0))
            return;
        _account!.Charge(ru);
        _throttle?.Rate?.Charge(ru);
        _gate.Policy.Usage?.RecordAdmitted(Tenant.Name, ru);
        if (_slot.IsHeld)
            _slotRu += ru;
    }

    private void EndStatementLocked()
    {
        if (_ticket is { } ticket)
        {
            ticket.Bucket.Leave(ticket); // it stopped waiting for budget: the next in line goes
            _ticket = null;
        }
        if (_throttle is { } throttle)
            RunawayMonitor.Exit(throttle);
        _throttle = null;
        if (_meter.IsRunning)
            _meter.Stop();
        _state = StatementState.Idle;
    }
}
