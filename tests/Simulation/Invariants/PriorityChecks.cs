using MProxy.Abstractions;
using MProxy.Edge.Qos;
using MProxy.Simulation.Core;

namespace MProxy.Simulation.Invariants;

/// <summary>
/// Invariant: HIGH is never starved by LOW — in every scheduler, around every event:
/// <list type="bullet">
/// <item>no waiter is granted a slot while a waiter of a higher class, whose tenant is below its
/// concurrency cap, was already waiting and still is (strict priority);</item>
/// <item>CoDel never sheds a waiter while a waiter of a lower class was already waiting and still
/// is (lowest class first);</item>
/// <item>while a slot is free, every waiter belongs to a tenant at its cap (work conservation).</item>
/// </list>
/// </summary>
public sealed class PriorityChecks(SimContext sim)
{
    private readonly List<SchedulerWaiter> _before = [];

    public long GrantsChecked { get; private set; }

    public long ShedsChecked { get; private set; }

    public void BeforeEvent()
    {
        _before.Clear();
        foreach (var waiter in sim.SlotWaits.Pending)
            if (waiter.Outcome == WaitOutcome.Pending)
                _before.Add(waiter);
    }

    public void AfterEvent()
    {
        foreach (var ended in _before)
        {
            if (ended.Outcome is not (WaitOutcome.Granted or WaitOutcome.Shed))
                continue;
            var granted = ended.Outcome == WaitOutcome.Granted;
            if (granted)
                GrantsChecked++;
            else
                ShedsChecked++;
            foreach (var other in _before)
            {
                if (other.Outcome != WaitOutcome.Pending || !ReferenceEquals(other.Flow.Scheduler, ended.Flow.Scheduler))
                    continue;
                if (granted && other.Priority < ended.Priority && !other.Flow.AtCap)
                {
                    sim.Checks.Fail("priority", $"{ended.Flow.Scheduler.Name}: {Label(ended)} was granted a slot while {Label(other)} waited (since {SimTrace.Stamp(other.EnqueuedAt).Trim()}) below its cap");
                    return;
                }
                if (!granted && other.Priority > ended.Priority)
                {
                    sim.Checks.Fail("priority", $"{ended.Flow.Scheduler.Name}: CoDel shed {Label(ended)} while {Label(other)} of a lower class waited");
                    return;
                }
            }
        }
    }

    /// <summary>A session took a free slot at once: nobody it could overtake may be waiting.</summary>
    internal void OnSlotTaken(QosScheduler scheduler, Priority priority)
    {
        foreach (var waiter in sim.SlotWaits.Pending)
            if (waiter.Outcome == WaitOutcome.Pending && ReferenceEquals(waiter.Flow.Scheduler, scheduler) && !waiter.Flow.AtCap && waiter.Priority <= priority)
            {
                sim.Checks.Fail("priority", $"{scheduler.Name}: a {priority} request took a free slot while {Label(waiter)} waited below its cap");
                return;
            }
    }

    /// <summary>Work conservation, after every event.</summary>
    internal void CheckWorkConserving(QosScheduler scheduler)
    {
        var stats = scheduler.GetStats();
        if (stats.Busy > stats.Capacity)
        {
            sim.Checks.Fail("pool-bounds", $"{scheduler.Name}: {stats.Busy} slots busy of {stats.Capacity}");
            return;
        }
        if (stats.Busy == stats.Capacity)
            return;
        foreach (var waiter in sim.SlotWaits.Pending)
            if (waiter.Outcome == WaitOutcome.Pending && ReferenceEquals(waiter.Flow.Scheduler, scheduler) && !waiter.Flow.AtCap)
            {
                sim.Checks.Fail("priority", $"{scheduler.Name}: {stats.Capacity - stats.Busy} slots free while {Label(waiter)} waits below its cap");
                return;
            }
    }

    private static string Label(SchedulerWaiter waiter) => $"{waiter.Priority} waiter #{waiter.Sequence} of {waiter.Flow.Tenant}";
}
