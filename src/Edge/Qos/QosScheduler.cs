using MProxy.Abstractions;

namespace MProxy.Edge.Qos;

/// <summary>
/// Decides who gets the next server slot of one pool (capacity = the pool's size).
/// <list type="bullet">
/// <item><b>Strict priority</b> between HIGH, MEDIUM and LOW: a class is served only when no
/// higher class has an eligible waiter.</item>
/// <item><b>Weighted fair share by RU</b> between the flows (tenant accounts) of one class:
/// start-time fair queueing. Each flow has a finish tag per class; a grant starts at
/// <c>max(V, finish)</c>, the flow with the smallest start goes first (ties: arrival order), and the
/// finish tag advances by the RU the slot cost divided by the flow's weight — estimated at grant,
/// corrected with the real cost at <see cref="Release"/>. <c>V</c>, the class's virtual time, is the
/// start of the latest grant, so idle flows bank no credit.</item>
/// <item><b>Concurrency caps</b>: a flow holding <c>MaxConcurrent</c> slots is skipped, never
/// blocking others.</item>
/// <item><b>Work-conserving</b>: after every change, free slots go to eligible waiters until none
/// is left; so while a slot is free, every queued waiter belongs to a capped flow.</item>
/// <item><b>CoDel</b> per class (RFC 8289 control law on the age of the class's oldest eligible
/// waiter): when a class's queueing delay has stayed above target for an interval, waiters are shed
/// at interval/√count — always from the <em>lowest</em> non-empty class, choosing there the
/// most-served flow (largest start tag) and its oldest waiter, so HIGH is protected and the noisy
/// tenant goes first. Evaluated at every event and by the scheduler's own timer (one
/// <see cref="ITimer"/> from the <see cref="TimeProvider"/>, re-armed only when its due time
/// changes), so a stalled pool still sheds.</item>
/// </list>
/// </summary>
/// <remarks>
/// <para>
/// Use: <see cref="AcquireAsync"/> (or the synchronous core <see cref="TryAcquire"/> /
/// <see cref="Enqueue"/> / <see cref="Cancel"/> that a simulation drives), hold the slot while
/// holding the server connection (a whole transaction in transaction mode), then
/// <see cref="Release"/> it exactly once with the RU it cost.
/// </para>
/// <para>
/// Thread-safe: one lock guards all state, including the flows'. <see cref="TryAcquire"/>,
/// <see cref="Release"/> and the fast path of <see cref="AcquireAsync"/> do not allocate; queueing
/// allocates one waiter (and, in <see cref="AcquireAsync"/>, a timer and the async state). Choosing
/// a flow scans the class's backlogged flows: O(tenants waiting in the class) per grant.
/// </para>
/// </remarks>
internal sealed class QosScheduler : IDisposable
{
    private const double EstimateGain = 0.25;
    private const double MinEstimate = 1e-3;

    private readonly Lock _lock = new();
    private readonly TimeProvider _time;
    private readonly ClassQueue[] _classes = new ClassQueue[Priorities.Count];
    private readonly List<SchedulerFlow> _flows = [];
    private readonly ITimer _timer;
    private CoDelSettings _codel = new();
    private long _targetTicks;
    private long _intervalTicks;
    private int _capacity;
    private int _busy;
    private long _sequence;
    private long _timerDue = long.MaxValue;
    private bool _closed;

    public QosScheduler(string name, int capacity, CoDelSettings codel, TimeProvider time, int id = 0)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        Name = name;
        Id = id;
        _time = time;
        _capacity = capacity;
        for (var p = 0; p < Priorities.Count; p++)
            _classes[p] = new ClassQueue();
        SetCoDel(codel);
        _timer = time.CreateTimer(static state => ((QosScheduler)state!).OnTimer(), this, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
    }

    public string Name { get; }

    /// <summary>A small dense number assigned by the owner (<c>QosGate</c>) to index per-scheduler state.</summary>
    public int Id { get; }

    public int Capacity
    {
        get
        {
            lock (_lock)
                return _capacity;
        }
    }

    public CoDelSettings CoDel
    {
        get
        {
            lock (_lock)
                return _codel;
        }
    }

    /// <summary>Adds a flow (one tenant account) with its weight (&gt; 0) and concurrency cap (≥ 1).</summary>
    public SchedulerFlow CreateFlow(string tenant, double weight, int maxConcurrent)
    {
        ValidateFlow(weight, maxConcurrent);
        lock (_lock)
        {
            var flow = new SchedulerFlow(this, _flows.Count, tenant, weight, maxConcurrent);
            _flows.Add(flow);
            return flow;
        }
    }

    /// <summary>Applies a reload's weight and cap; a raised cap lets waiters in at once.</summary>
    public void ReconfigureFlow(SchedulerFlow flow, double weight, int maxConcurrent)
    {
        ValidateFlow(weight, maxConcurrent);
        CheckOwner(flow);
        lock (_lock)
        {
            flow.Weight = weight;
            flow.MaxConcurrent = maxConcurrent;
            AfterChangeLocked(_time.GetTimestamp());
        }
    }

    /// <summary>Applies a new capacity (the pool was resized) and CoDel settings.</summary>
    public void Reconfigure(int capacity, CoDelSettings codel)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        lock (_lock)
        {
            _capacity = capacity;
            SetCoDel(codel);
            AfterChangeLocked(_time.GetTimestamp());
        }
    }

    /// <summary>
    /// Takes a slot at once if one is free and <paramref name="flow"/> is below its cap; never
    /// queues, never allocates. (While a slot is free every queued waiter is capped, so taking it
    /// overtakes no one who could have had it.)
    /// </summary>
    public bool TryAcquire(SchedulerFlow flow, Priority priority, out SchedulerSlot slot)
    {
        CheckOwner(flow);
        lock (_lock)
        {
            if (_closed || _busy >= _capacity || flow.AtCap)
            {
                slot = default;
                return false;
            }
            slot = GrantLocked(flow.Queues[(int)priority], _time.GetTimestamp());
            return true;
        }
    }

    /// <summary>
    /// Queues a request for a slot and returns its waiter, already <see cref="WaitOutcome.Granted"/>
    /// if a slot was free for it. The caller ends a pending wait with <see cref="Cancel"/>.
    /// </summary>
    public SchedulerWaiter Enqueue(SchedulerFlow flow, Priority priority)
    {
        CheckOwner(flow);
        lock (_lock)
        {
            var now = _time.GetTimestamp();
            var waiter = new SchedulerWaiter(flow, priority, now, _sequence++);
            if (_closed)
            {
                waiter.TryComplete(WaitOutcome.Closed, default, TimeSpan.Zero, TimeSpan.Zero);
            }
            else if (_busy < _capacity && !flow.AtCap)
            {
                waiter.TryComplete(WaitOutcome.Granted, GrantLocked(flow.Queues[(int)priority], now), TimeSpan.Zero, TimeSpan.Zero);
            }
            else
            {
                Append(flow.Queues[(int)priority], waiter);
                AfterChangeLocked(now);
            }
            return waiter;
        }
    }

    /// <summary>Ends a pending wait with <paramref name="outcome"/> (timed out or cancelled); false if it had already ended.</summary>
    public bool Cancel(SchedulerWaiter waiter, WaitOutcome outcome)
    {
        ArgumentNullException.ThrowIfNull(waiter);
        if (outcome is not (WaitOutcome.TimedOut or WaitOutcome.Canceled))
            throw new ArgumentOutOfRangeException(nameof(outcome), outcome, "only a timeout or a cancellation ends a wait from outside");
        CheckOwner(waiter.Flow);
        lock (_lock)
        {
            if (waiter.Outcome != WaitOutcome.Pending)
                return false;
            var now = _time.GetTimestamp();
            Remove(waiter);
            waiter.TryComplete(outcome, default, _time.GetElapsedTime(waiter.EnqueuedAt, now), TimeSpan.Zero);
            var c = _classes[(int)waiter.Priority];
            if (outcome == WaitOutcome.TimedOut)
                c.TimedOut++;
            else
                c.Canceled++;
            AfterChangeLocked(now);
            return true;
        }
    }

    /// <summary>
    /// Hands a slot back with the RU it cost (all statements run while it was held), charges that to
    /// the flow's finish tag and gives the slot to the next eligible waiter. Exactly once per slot.
    /// </summary>
    public void Release(in SchedulerSlot slot, double ru)
    {
        if (slot.Flow is not { } flow)
            return;
        CheckOwner(flow);
        lock (_lock)
        {
            flow.InFlight--;
            _busy--;
            if (double.IsFinite(ru) && ru >= 0)
            {
                flow.Queues[(int)slot.Priority].Finish += (ru - slot.Estimate) / flow.Weight;
                flow.EstimateRu = Math.Max(MinEstimate, flow.EstimateRu + EstimateGain * (ru - flow.EstimateRu));
                flow.RuServed += ru;
            }
            AfterChangeLocked(_time.GetTimestamp());
        }
    }

    /// <summary>
    /// Waits for a slot up to <paramref name="timeout"/> (<see cref="Timeout.InfiniteTimeSpan"/>: no
    /// limit). Completes synchronously, without allocating, when a slot is free. A timeout, shedding
    /// or closing is returned as the grant's outcome; cancellation throws
    /// <see cref="OperationCanceledException"/>.
    /// </summary>
    public ValueTask<SlotGrant> AcquireAsync(SchedulerFlow flow, Priority priority, TimeSpan timeout, CancellationToken cancellationToken)
    {
        if (!cancellationToken.IsCancellationRequested && TryAcquire(flow, priority, out var slot))
            return new ValueTask<SlotGrant>(new SlotGrant(WaitOutcome.Granted, slot, TimeSpan.Zero, TimeSpan.Zero));
        return AcquireSlowAsync(flow, priority, timeout, cancellationToken);
    }

    private async ValueTask<SlotGrant> AcquireSlowAsync(SchedulerFlow flow, Priority priority, TimeSpan timeout, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        var waiter = Enqueue(flow, priority);
        if (waiter.Outcome == WaitOutcome.Pending)
        {
            if (timeout != Timeout.InfiniteTimeSpan && timeout <= TimeSpan.Zero)
            {
                Cancel(waiter, WaitOutcome.TimedOut);
            }
            else
            {
                using var timer = timeout == Timeout.InfiniteTimeSpan
                    ? null
                    : _time.CreateTimer(static state => ((SchedulerWaiter)state!).Expire(), waiter, timeout, Timeout.InfiniteTimeSpan);
                using var registration = cancellationToken.UnsafeRegister(static state => ((SchedulerWaiter)state!).CancelWait(), waiter);
                await waiter.Completion;
            }
        }
        if (waiter.Outcome == WaitOutcome.Canceled)
            throw new OperationCanceledException(cancellationToken);
        return waiter.ToGrant();
    }

    public SchedulerStats GetStats()
    {
        lock (_lock)
        {
            long granted = 0, shed = 0, timedOut = 0, canceled = 0;
            var oldest = long.MaxValue;
            foreach (var c in _classes)
            {
                granted += c.Granted;
                shed += c.Shed;
                timedOut += c.TimedOut;
                canceled += c.Canceled;
                foreach (var fq in c.Backlog)
                    oldest = Math.Min(oldest, fq.Head!.EnqueuedAt);
            }
            var now = _time.GetTimestamp();
            return new SchedulerStats(
                _capacity,
                _busy,
                _classes[0].Waiting,
                _classes[1].Waiting,
                _classes[2].Waiting,
                granted,
                shed,
                timedOut,
                canceled,
                oldest == long.MaxValue ? TimeSpan.Zero : _time.GetElapsedTime(oldest, now));
        }
    }

    /// <summary>RU served and slots held per flow (tests and SHOW).</summary>
    public (double RuServed, long Grants, int InFlight, long Shed) GetFlowStats(SchedulerFlow flow)
    {
        CheckOwner(flow);
        lock (_lock)
            return (flow.RuServed, flow.Grants, flow.InFlight, flow.Shed);
    }

    /// <summary>Fails every waiter with <see cref="WaitOutcome.Closed"/> and grants nothing more.</summary>
    public void Close()
    {
        lock (_lock)
        {
            _closed = true;
            var now = _time.GetTimestamp();
            foreach (var c in _classes)
            {
                while (c.Backlog.Count > 0)
                {
                    var waiter = c.Backlog[^1].Head!;
                    Remove(waiter);
                    waiter.TryComplete(WaitOutcome.Closed, default, _time.GetElapsedTime(waiter.EnqueuedAt, now), TimeSpan.Zero);
                }
            }
            ArmTimerLocked(long.MaxValue, now);
        }
    }

    public void Dispose()
    {
        Close();
        _timer.Dispose();
    }

    private void OnTimer()
    {
        lock (_lock)
        {
            _timerDue = long.MaxValue;
            if (!_closed)
                AfterChangeLocked(_time.GetTimestamp());
        }
    }

    /// <summary>After any change: fill free slots, let CoDel shed, re-arm the timer.</summary>
    private void AfterChangeLocked(long now)
    {
        DispatchLocked(now);
        RunCoDelLocked(now);
        ScheduleTimerLocked(now);
    }

    private void DispatchLocked(long now)
    {
        while (!_closed && _busy < _capacity)
        {
            FlowQueue? next = null;
            for (var p = 0; p < Priorities.Count && next is null; p++)
                next = PickLocked(_classes[p]);
            if (next is null)
                return;
            var waiter = next.Head!;
            Remove(waiter);
            waiter.TryComplete(WaitOutcome.Granted, GrantLocked(next, now), _time.GetElapsedTime(waiter.EnqueuedAt, now), TimeSpan.Zero);
        }
    }

    /// <summary>The eligible backlogged flow of a class with the smallest start tag (ties: earliest head).</summary>
    private static FlowQueue? PickLocked(ClassQueue c)
    {
        FlowQueue? best = null;
        double bestStart = 0;
        foreach (var fq in c.Backlog)
        {
            if (fq.Flow.AtCap)
                continue;
            var start = Math.Max(c.VirtualTime, fq.Finish);
            if (best is null || start < bestStart || (start == bestStart && fq.Head!.Sequence < best.Head!.Sequence))
            {
                best = fq;
                bestStart = start;
            }
        }
        return best;
    }

    private SchedulerSlot GrantLocked(FlowQueue fq, long now)
    {
        var c = _classes[(int)fq.Priority];
        var flow = fq.Flow;
        var start = Math.Max(c.VirtualTime, fq.Finish);
        var estimate = flow.EstimateRu;
        fq.Finish = start + estimate / flow.Weight;
        c.VirtualTime = start;
        c.Granted++;
        flow.InFlight++;
        flow.Grants++;
        _busy++;
        return new SchedulerSlot(flow, fq.Priority, estimate, now);
    }

    private void Append(FlowQueue fq, SchedulerWaiter waiter)
    {
        waiter.Prev = fq.Tail;
        waiter.Next = null;
        if (fq.Tail is null)
            fq.Head = waiter;
        else
            fq.Tail.Next = waiter;
        fq.Tail = waiter;
        fq.Count++;
        var c = _classes[(int)fq.Priority];
        c.Waiting++;
        if (fq.Count == 1)
        {
            fq.BacklogIndex = c.Backlog.Count;
            c.Backlog.Add(fq);
        }
    }

    private void Remove(SchedulerWaiter waiter)
    {
        var fq = waiter.Flow.Queues[(int)waiter.Priority];
        if (waiter.Prev is null)
            fq.Head = waiter.Next;
        else
            waiter.Prev.Next = waiter.Next;
        if (waiter.Next is null)
            fq.Tail = waiter.Prev;
        else
            waiter.Next.Prev = waiter.Prev;
        waiter.Prev = waiter.Next = null;
        fq.Count--;
        var c = _classes[(int)fq.Priority];
        c.Waiting--;
        if (fq.Count == 0)
        {
            var last = c.Backlog[^1];
            c.Backlog[fq.BacklogIndex] = last;
            last.BacklogIndex = fq.BacklogIndex;
            c.Backlog.RemoveAt(c.Backlog.Count - 1);
            fq.BacklogIndex = -1;
        }
    }

    // ---- CoDel -------------------------------------------------------------------------------

    private void RunCoDelLocked(long now)
    {
        if (!_codel.Enabled || _closed)
            return;
        for (var p = 0; p < Priorities.Count; p++)
        {
            var c = _classes[p];
            var okToDrop = OkToDropLocked(c, now);
            if (c.Dropping)
            {
                if (!okToDrop)
                {
                    c.Dropping = false;
                    continue;
                }
                while (now >= c.DropNext && c.Dropping)
                {
                    if (!ShedOneLocked(now))
                    {
                        c.Dropping = false;
                        break;
                    }
                    c.Count++;
                    if (!OkToDropLocked(c, now))
                        c.Dropping = false;
                    else
                        c.DropNext = ControlLaw(c.DropNext, c.Count);
                }
            }
            else if (okToDrop)
            {
                ShedOneLocked(now);
                c.Dropping = true;
                // Re-entering soon after leaving the dropping state resumes near the previous rate.
                var delta = c.Count - c.LastCount;
                c.Count = delta > 1 && now - c.DropNext < 16 * _intervalTicks ? delta : 1;
                c.DropNext = ControlLaw(now, c.Count);
                c.LastCount = c.Count;
            }
        }
    }

    /// <summary>
    /// CoDel's ok-to-drop for a class, on the age of its oldest eligible waiter: true once that age
    /// has stayed at or above target for a whole interval. A class with at most one eligible waiter
    /// has no standing queue (CoDel's "less than one MTU queued").
    /// </summary>
    private bool OkToDropLocked(ClassQueue c, long now)
    {
        var eligible = EligibleHead(c, out var oldest);
        if (eligible <= 1 || now - oldest < _targetTicks)
        {
            c.Above = false;
            return false;
        }
        if (!c.Above)
        {
            c.Above = true;
            c.FirstAboveTime = now + _intervalTicks;
            return false;
        }
        return now >= c.FirstAboveTime;
    }

    /// <summary>Counts the waiters of a class's uncapped flows and finds the oldest of them.</summary>
    private static int EligibleHead(ClassQueue c, out long oldest)
    {
        oldest = long.MaxValue;
        var count = 0;
        foreach (var fq in c.Backlog)
        {
            if (fq.Flow.AtCap)
                continue;
            count += fq.Count;
            if (fq.Head!.EnqueuedAt < oldest)
                oldest = fq.Head.EnqueuedAt;
        }
        return count;
    }

    /// <summary>Sheds one waiter from the lowest non-empty class: the head of its most-served flow.</summary>
    private bool ShedOneLocked(long now)
    {
        for (var p = Priorities.Count - 1; p >= 0; p--)
        {
            var c = _classes[p];
            if (c.Backlog.Count == 0)
                continue;
            FlowQueue? victim = null;
            double victimStart = 0;
            foreach (var fq in c.Backlog)
            {
                var start = Math.Max(c.VirtualTime, fq.Finish);
                if (victim is null || start > victimStart
                    || (start == victimStart && (fq.Count > victim.Count || (fq.Count == victim.Count && fq.Head!.Sequence < victim.Head!.Sequence))))
                {
                    victim = fq;
                    victimStart = start;
                }
            }
            var waiter = victim!.Head!;
            Remove(waiter);
            var waited = _time.GetElapsedTime(waiter.EnqueuedAt, now);
            // A retry meets roughly the delay the class's queue stands at now, and no less than an interval.
            EligibleHead(c, out var oldest);
            var standing = oldest == long.MaxValue ? TimeSpan.Zero : _time.GetElapsedTime(oldest, now);
            var retryAfter = standing > _codel.Interval ? standing : _codel.Interval;
            waiter.TryComplete(WaitOutcome.Shed, default, waited, retryAfter);
            c.Shed++;
            waiter.Flow.Shed++;
            return true;
        }
        return false;
    }

    private long ControlLaw(long t, int count) => t + (long)(_intervalTicks / Math.Sqrt(count));

    private void ScheduleTimerLocked(long now)
    {
        var due = long.MaxValue;
        if (_codel.Enabled && !_closed)
        {
            foreach (var c in _classes)
            {
                if (EligibleHead(c, out var oldest) <= 1)
                    continue;
                var at = c.Dropping ? c.DropNext : c.Above ? c.FirstAboveTime : oldest + _targetTicks;
                if (at < due)
                    due = at;
            }
        }
        ArmTimerLocked(due, now);
    }

    private void ArmTimerLocked(long due, long now)
    {
        if (due == _timerDue)
            return;
        _timerDue = due;
        if (due == long.MaxValue)
        {
            _timer.Change(Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
            return;
        }
        var ticks = Math.Max(0, due - now);
        _timer.Change(TimeSpan.FromTicks((long)Math.Ceiling(ticks * ((double)TimeSpan.TicksPerSecond / _time.TimestampFrequency))), Timeout.InfiniteTimeSpan);
    }

    private void SetCoDel(CoDelSettings codel)
    {
        _codel = codel;
        _targetTicks = ToTimestampTicks(codel.Target);
        _intervalTicks = Math.Max(1, ToTimestampTicks(codel.Interval));
        if (!codel.Enabled)
            foreach (var c in _classes)
                c.Above = c.Dropping = false;
    }

    private long ToTimestampTicks(TimeSpan span) => (long)(span.Ticks * ((double)_time.TimestampFrequency / TimeSpan.TicksPerSecond));

    private void CheckOwner(SchedulerFlow flow)
    {
        ArgumentNullException.ThrowIfNull(flow);
        if (!ReferenceEquals(flow.Scheduler, this))
            throw new ArgumentException($"flow of tenant '{flow.Tenant}' belongs to scheduler '{flow.Scheduler.Name}', not '{Name}'", nameof(flow));
    }

    private static void ValidateFlow(double weight, int maxConcurrent)
    {
        if (!(weight > 0) || !double.IsFinite(weight))
            throw new ArgumentOutOfRangeException(nameof(weight), weight, "must be a finite number > 0");
        ArgumentOutOfRangeException.ThrowIfLessThan(maxConcurrent, 1);
    }

    /// <summary>One priority class: its backlogged flows, virtual time and CoDel state.</summary>
    private sealed class ClassQueue
    {
        public List<FlowQueue> Backlog { get; } = [];
        public double VirtualTime { get; set; }
        public int Waiting { get; set; }
        public long Granted { get; set; }
        public long Shed { get; set; }
        public long TimedOut { get; set; }
        public long Canceled { get; set; }

        // CoDel (RFC 8289 names): first_above_time, dropping, drop_next, count, lastcount.
        public bool Above { get; set; }
        public long FirstAboveTime { get; set; }
        public bool Dropping { get; set; }
        public long DropNext { get; set; }
        public int Count { get; set; }
        public int LastCount { get; set; }
    }
}
