using MProxy.Abstractions;

namespace MProxy.Edge.Qos;

/// <summary>How a wait for a server slot ended.</summary>
internal enum WaitOutcome
{
    Pending = 0,
    Granted = 1,

    /// <summary>The caller's wait timeout passed (SQLSTATE 53300).</summary>
    TimedOut = 2,

    /// <summary>The caller's token was cancelled.</summary>
    Canceled = 3,

    /// <summary>CoDel shed the waiter under load (SQLSTATE 53400).</summary>
    Shed = 4,

    /// <summary>The scheduler was closed (pool removed or shutdown).</summary>
    Closed = 5,
}

/// <summary>
/// A server slot held by a query (or a whole transaction), obtained from a <see cref="QosScheduler"/>
/// and handed back exactly once with <see cref="QosScheduler.Release"/>.
/// </summary>
internal readonly struct SchedulerSlot
{
    internal SchedulerSlot(SchedulerFlow flow, Priority priority, double estimate, long grantedAt)
    {
        Flow = flow;
        Priority = priority;
        Estimate = estimate;
        GrantedAt = grantedAt;
    }

    /// <summary>The flow (tenant account) holding the slot; null for no slot.</summary>
    public SchedulerFlow? Flow { get; }

    public Priority Priority { get; }

    /// <summary>The RU the scheduler advanced the flow's finish tag by at grant; corrected at release.</summary>
    internal double Estimate { get; }

    /// <summary>Timestamp (of the scheduler's <see cref="TimeProvider"/>) of the grant.</summary>
    public long GrantedAt { get; }

    public bool IsHeld => Flow is not null;
}

/// <summary>The result of an asynchronous wait for a slot: a slot, or why there is none.</summary>
internal readonly struct SlotGrant
{
    public SlotGrant(WaitOutcome outcome, SchedulerSlot slot, TimeSpan waited, TimeSpan retryAfter)
    {
        Outcome = outcome;
        Slot = slot;
        Waited = waited;
        RetryAfter = retryAfter;
    }

    public WaitOutcome Outcome { get; }

    /// <summary>Held when <see cref="Outcome"/> is <see cref="WaitOutcome.Granted"/>.</summary>
    public SchedulerSlot Slot { get; }

    /// <summary>Time spent queued.</summary>
    public TimeSpan Waited { get; }

    /// <summary>For a shed waiter, when a retry is likely to get through.</summary>
    public TimeSpan RetryAfter { get; }

    public bool IsGranted => Outcome == WaitOutcome.Granted;
}

/// <summary>Counters of one scheduler, for SHOW and metrics.</summary>
internal readonly record struct SchedulerStats(
    int Capacity,
    int Busy,
    int WaitingHigh,
    int WaitingMedium,
    int WaitingLow,
    long Granted,
    long Shed,
    long TimedOut,
    long Canceled,
    TimeSpan LongestWait);

/// <summary>
/// One tenant account's share of one scheduler: its weight and concurrency cap, how many slots it
/// holds, its queue per priority class and its fair-queueing state. Created by
/// <see cref="QosScheduler.CreateFlow"/>; every mutable field is guarded by the scheduler's lock.
/// </summary>
internal sealed class SchedulerFlow
{
    internal SchedulerFlow(QosScheduler scheduler, int id, string tenant, double weight, int maxConcurrent)
    {
        Scheduler = scheduler;
        Id = id;
        Tenant = tenant;
        Weight = weight;
        MaxConcurrent = maxConcurrent;
        Queues = new FlowQueue[Priorities.Count];
        for (var p = 0; p < Priorities.Count; p++)
            Queues[p] = new FlowQueue(this, (Priority)p);
    }

    public QosScheduler Scheduler { get; }

    public int Id { get; }

    public string Tenant { get; }

    internal double Weight { get; set; }

    internal int MaxConcurrent { get; set; }

    internal int InFlight { get; set; }

    /// <summary>Moving average of the RU the flow's slots cost; what a grant is charged before the real cost is known.</summary>
    internal double EstimateRu { get; set; } = 1;

    internal FlowQueue[] Queues { get; }

    internal double RuServed { get; set; }

    internal long Grants { get; set; }

    internal long Shed { get; set; }

    internal bool AtCap => InFlight >= MaxConcurrent;
}

/// <summary>The waiters of one flow in one priority class (an intrusive FIFO list) and the flow's finish tag in that class.</summary>
internal sealed class FlowQueue(SchedulerFlow flow, Priority priority)
{
    public SchedulerFlow Flow { get; } = flow;

    public Priority Priority { get; } = priority;

    /// <summary>Virtual time up to which the flow has been served in this class (RU / weight).</summary>
    public double Finish { get; set; }

    public SchedulerWaiter? Head { get; set; }

    public SchedulerWaiter? Tail { get; set; }

    public int Count { get; set; }

    /// <summary>Index in the class's backlog list while <see cref="Count"/> &gt; 0, else -1.</summary>
    public int BacklogIndex { get; set; } = -1;
}

/// <summary>
/// A query waiting for a slot. Completed exactly once, under the scheduler's lock, with an
/// <see cref="WaitOutcome"/>; <see cref="Completion"/> then completes (continuations run
/// asynchronously, never inside the lock). A simulation can read <see cref="Outcome"/> synchronously
/// right after each step.
/// </summary>
internal sealed class SchedulerWaiter
{
    private readonly TaskCompletionSource _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _outcome;

    internal SchedulerWaiter(SchedulerFlow flow, Priority priority, long enqueuedAt, long sequence)
    {
        Flow = flow;
        Priority = priority;
        EnqueuedAt = enqueuedAt;
        Sequence = sequence;
    }

    public SchedulerFlow Flow { get; }

    public Priority Priority { get; }

    public long EnqueuedAt { get; }

    /// <summary>Arrival order in the scheduler; breaks ties between flows (FIFO).</summary>
    public long Sequence { get; }

    public WaitOutcome Outcome => (WaitOutcome)Volatile.Read(ref _outcome);

    public SchedulerSlot Slot { get; private set; }

    public TimeSpan Waited { get; private set; }

    public TimeSpan RetryAfter { get; private set; }

    public Task Completion => _completion.Task;

    internal SchedulerWaiter? Prev { get; set; }

    internal SchedulerWaiter? Next { get; set; }

    public SlotGrant ToGrant() => new(Outcome, Slot, Waited, RetryAfter);

    /// <summary>Called under the scheduler's lock.</summary>
    internal bool TryComplete(WaitOutcome outcome, SchedulerSlot slot, TimeSpan waited, TimeSpan retryAfter)
    {
        if (_outcome != (int)WaitOutcome.Pending)
            return false;
        Slot = slot;
        Waited = waited;
        RetryAfter = retryAfter;
        Volatile.Write(ref _outcome, (int)outcome);
        _completion.TrySetResult();
        return true;
    }

    internal void Expire() => Flow.Scheduler.Cancel(this, WaitOutcome.TimedOut);

    internal void CancelWait() => Flow.Scheduler.Cancel(this, WaitOutcome.Canceled);
}
