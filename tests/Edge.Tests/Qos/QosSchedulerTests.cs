using MProxy.Abstractions;
using MProxy.Edge.Qos;
using MProxy.TestSupport;

namespace MProxy.Edge.Tests.Qos;

public sealed class QosSchedulerTests : IDisposable
{
    private static readonly CoDelSettings NoCoDel = new() { Enabled = false };
    private readonly ManualTimeProvider _time = new();
    private readonly List<QosScheduler> _schedulers = [];

    public void Dispose()
    {
        foreach (var scheduler in _schedulers)
            scheduler.Dispose();
    }

    private QosScheduler NewScheduler(int capacity, CoDelSettings? codel = null)
    {
        var scheduler = new QosScheduler("pool", capacity, codel ?? NoCoDel, _time);
        _schedulers.Add(scheduler);
        return scheduler;
    }

    [Fact]
    public void TryAcquire_FreeSlot_GrantsAtOnce()
    {
        var scheduler = NewScheduler(2);
        var flow = scheduler.CreateFlow("a", 1, 10);

        Assert.True(scheduler.TryAcquire(flow, Priority.Medium, out var first));
        Assert.True(scheduler.TryAcquire(flow, Priority.Medium, out _));
        Assert.False(scheduler.TryAcquire(flow, Priority.Medium, out _));

        Assert.True(first.IsHeld);
        Assert.Equal(2, scheduler.GetStats().Busy);
    }

    [Fact]
    public void Enqueue_PoolFull_WaitsUntilASlotIsReleased()
    {
        var scheduler = NewScheduler(1);
        var flow = scheduler.CreateFlow("a", 1, 10);
        scheduler.TryAcquire(flow, Priority.Medium, out var held);

        var waiter = scheduler.Enqueue(flow, Priority.Medium);
        Assert.Equal(WaitOutcome.Pending, waiter.Outcome);
        _time.Advance(TimeSpan.FromMilliseconds(3));
        scheduler.Release(held, 1);

        Assert.Equal(WaitOutcome.Granted, waiter.Outcome);
        Assert.Equal(TimeSpan.FromMilliseconds(3), waiter.Waited);
        Assert.True(waiter.Completion.IsCompleted);
        Assert.Equal(1, scheduler.GetStats().Busy);
    }

    [Fact]
    public void Release_WaitersOfAllClasses_ServesHighThenMediumThenLow()
    {
        var scheduler = NewScheduler(1);
        var a = scheduler.CreateFlow("a", 1, 10);
        var b = scheduler.CreateFlow("b", 1, 10);
        scheduler.TryAcquire(a, Priority.Low, out var held);
        var low = scheduler.Enqueue(a, Priority.Low);
        var medium = scheduler.Enqueue(b, Priority.Medium);
        var high = scheduler.Enqueue(a, Priority.High);

        scheduler.Release(held, 1);
        Assert.Equal(WaitOutcome.Granted, high.Outcome);
        Assert.Equal(WaitOutcome.Pending, medium.Outcome);

        scheduler.Release(high.Slot, 1);
        Assert.Equal(WaitOutcome.Granted, medium.Outcome);
        Assert.Equal(WaitOutcome.Pending, low.Outcome);

        scheduler.Release(medium.Slot, 1);
        Assert.Equal(WaitOutcome.Granted, low.Outcome);
    }

    [Theory]
    [InlineData(2.0, 1.0, 3.0, 1.0, 1)]
    [InlineData(2.0, 1.0, 1.0, 5.0, 4)]
    [InlineData(1.0, 1.0, 10.0, 1.0, 3)]
    [InlineData(3.0, 1.0, 2.0, 2.0, 2)]
    public void Release_TwoBackloggedTenants_ServesRuInTheRatioOfTheirWeights(double weightA, double weightB, double costA, double costB, int capacity)
    {
        var scheduler = NewScheduler(capacity);
        var a = scheduler.CreateFlow("a", weightA, 100);
        var b = scheduler.CreateFlow("b", weightB, 100);
        var random = new Random(42);
        var held = new List<SchedulerSlot>();
        // Keep both tenants backlogged: eight waiters each, topped up as they are served.
        var waiting = new List<SchedulerWaiter>();
        for (var i = 0; i < 8; i++)
        {
            waiting.Add(scheduler.Enqueue(a, Priority.Medium));
            waiting.Add(scheduler.Enqueue(b, Priority.Medium));
        }
        double ruA = 0, ruB = 0;
        for (var round = 0; round < 6000; round++)
        {
            for (var i = waiting.Count - 1; i >= 0; i--)
            {
                if (waiting[i].Outcome != WaitOutcome.Granted)
                    continue;
                held.Add(waiting[i].Slot);
                waiting[i] = scheduler.Enqueue(waiting[i].Flow, Priority.Medium);
            }
            // Slots finish in random order.
            var index = random.Next(held.Count);
            var slot = held[index];
            held.RemoveAt(index);
            var cost = slot.Flow == a ? costA : costB;
            if (round >= 500)
            {
                if (slot.Flow == a)
                    ruA += cost;
                else
                    ruB += cost;
            }
            scheduler.Release(slot, cost);
        }

        var expected = weightA / weightB;
        Assert.InRange(ruA / ruB, expected * 0.95, expected * 1.05);
    }

    [Fact]
    public void Release_EqualWeightsDifferentCosts_SharesRuNotQueryCount()
    {
        var scheduler = NewScheduler(1);
        var heavy = scheduler.CreateFlow("heavy", 1, 100);
        var light = scheduler.CreateFlow("light", 1, 100);
        scheduler.TryAcquire(light, Priority.Medium, out var slot);
        var waiters = new Dictionary<SchedulerFlow, SchedulerWaiter>
        {
            [heavy] = scheduler.Enqueue(heavy, Priority.Medium),
            [light] = scheduler.Enqueue(light, Priority.Medium),
        };
        for (var i = 0; i < 3000; i++)
        {
            scheduler.Release(slot, slot.Flow == heavy ? 10 : 1);
            foreach (var (flow, waiter) in waiters)
            {
                if (waiter.Outcome == WaitOutcome.Granted)
                {
                    slot = waiter.Slot;
                    waiters[flow] = scheduler.Enqueue(flow, Priority.Medium);
                    break;
                }
            }
        }

        var heavyStats = scheduler.GetFlowStats(heavy);
        var lightStats = scheduler.GetFlowStats(light);
        Assert.InRange(heavyStats.RuServed / lightStats.RuServed, 0.9, 1.1);
        Assert.InRange((double)lightStats.Grants / heavyStats.Grants, 9.0, 11.0);
    }

    [Fact]
    public void Enqueue_TenantAtItsCap_IsSkippedWithoutBlockingOthers()
    {
        var scheduler = NewScheduler(3);
        var capped = scheduler.CreateFlow("capped", 1, 1);
        var other = scheduler.CreateFlow("other", 1, 10);

        var first = scheduler.Enqueue(capped, Priority.High);
        var second = scheduler.Enqueue(capped, Priority.High);
        var third = scheduler.Enqueue(capped, Priority.High);
        var fromOther = scheduler.Enqueue(other, Priority.Low);

        Assert.Equal(WaitOutcome.Granted, first.Outcome);
        Assert.Equal(WaitOutcome.Pending, second.Outcome);
        Assert.Equal(WaitOutcome.Pending, third.Outcome);
        Assert.Equal(WaitOutcome.Granted, fromOther.Outcome);
        Assert.True(scheduler.TryAcquire(other, Priority.Low, out _));
        Assert.Equal(3, scheduler.GetStats().Busy);
    }

    [Fact]
    public void Release_CappedHighAndWaitingLow_FreeSlotGoesToLow()
    {
        var scheduler = NewScheduler(2);
        var capped = scheduler.CreateFlow("capped", 1, 1);
        var low = scheduler.CreateFlow("low", 1, 10);
        scheduler.TryAcquire(capped, Priority.High, out _);
        scheduler.TryAcquire(low, Priority.Low, out var lowSlot);
        var highWaiter = scheduler.Enqueue(capped, Priority.High);
        var lowWaiter = scheduler.Enqueue(low, Priority.Low);

        scheduler.Release(lowSlot, 1);

        Assert.Equal(WaitOutcome.Pending, highWaiter.Outcome);
        Assert.Equal(WaitOutcome.Granted, lowWaiter.Outcome);
        Assert.Equal(2, scheduler.GetStats().Busy);
    }

    [Fact]
    public void ReconfigureFlow_RaisedCap_LetsWaitersInAtOnce()
    {
        var scheduler = NewScheduler(4);
        var flow = scheduler.CreateFlow("a", 1, 1);
        scheduler.TryAcquire(flow, Priority.Medium, out _);
        var waiter = scheduler.Enqueue(flow, Priority.Medium);
        Assert.Equal(WaitOutcome.Pending, waiter.Outcome);

        scheduler.ReconfigureFlow(flow, 1, 2);

        Assert.Equal(WaitOutcome.Granted, waiter.Outcome);
    }

    [Fact]
    public void Reconfigure_LargerCapacity_GrantsQueuedWaiters()
    {
        var scheduler = NewScheduler(1);
        var flow = scheduler.CreateFlow("a", 1, 10);
        scheduler.TryAcquire(flow, Priority.Medium, out _);
        var waiter = scheduler.Enqueue(flow, Priority.Medium);

        scheduler.Reconfigure(2, NoCoDel);

        Assert.Equal(WaitOutcome.Granted, waiter.Outcome);
    }

    [Fact]
    public void Random_AnySequenceOfEvents_NeverLeavesASlotFreeWhileAnUncappedTenantWaits()
    {
        var random = new Random(7);
        var scheduler = NewScheduler(3);
        var flows = new[]
        {
            scheduler.CreateFlow("a", 1, 1),
            scheduler.CreateFlow("b", 2, 2),
            scheduler.CreateFlow("c", 1, 10),
        };
        var held = new List<SchedulerSlot>();
        var pending = new List<SchedulerWaiter>();
        for (var step = 0; step < 5000; step++)
        {
            switch (random.Next(3))
            {
                case 0:
                    pending.Add(scheduler.Enqueue(flows[random.Next(3)], (Priority)random.Next(3)));
                    break;
                case 1 when held.Count > 0:
                    var i = random.Next(held.Count);
                    scheduler.Release(held[i], random.Next(1, 20));
                    held.RemoveAt(i);
                    break;
                default:
                    if (pending.Count > 0)
                        scheduler.Cancel(pending[random.Next(pending.Count)], WaitOutcome.TimedOut);
                    break;
            }
            for (var j = pending.Count - 1; j >= 0; j--)
            {
                if (pending[j].Outcome == WaitOutcome.Pending)
                    continue;
                if (pending[j].Outcome == WaitOutcome.Granted)
                    held.Add(pending[j].Slot);
                pending.RemoveAt(j);
            }

            var stats = scheduler.GetStats();
            Assert.Equal(held.Count, stats.Busy);
            Assert.Equal(pending.Count, stats.WaitingHigh + stats.WaitingMedium + stats.WaitingLow);
            if (stats.Busy < stats.Capacity)
            {
                foreach (var waiter in pending)
                {
                    var (_, _, inFlight, _) = scheduler.GetFlowStats(waiter.Flow);
                    Assert.True(inFlight >= waiter.Flow.MaxConcurrent, $"step {step}: a slot is free while tenant {waiter.Flow.Tenant} waits below its cap");
                }
            }
            foreach (var flow in flows)
                Assert.True(scheduler.GetFlowStats(flow).InFlight <= flow.MaxConcurrent);
        }
    }

    [Fact]
    public async Task AcquireAsync_SlotFree_CompletesSynchronously()
    {
        var scheduler = NewScheduler(1);
        var flow = scheduler.CreateFlow("a", 1, 10);

        var task = scheduler.AcquireAsync(flow, Priority.Medium, TimeSpan.FromSeconds(1), CancellationToken.None);

        Assert.True(task.IsCompletedSuccessfully);
        var grant = await task;
        Assert.True(grant.IsGranted);
        Assert.True(grant.Slot.IsHeld);
    }

    [Fact]
    public async Task AcquireAsync_NoSlotWithinTheTimeout_TimesOutAndLeavesTheQueue()
    {
        var scheduler = NewScheduler(1);
        var flow = scheduler.CreateFlow("a", 1, 10);
        scheduler.TryAcquire(flow, Priority.Medium, out var held);

        var task = scheduler.AcquireAsync(flow, Priority.Medium, TimeSpan.FromMilliseconds(50), CancellationToken.None);
        Assert.False(task.IsCompleted);
        Assert.Equal(1, scheduler.GetStats().WaitingMedium);
        _time.Advance(TimeSpan.FromMilliseconds(49));
        Assert.False(task.IsCompleted);
        _time.Advance(TimeSpan.FromMilliseconds(1));

        var grant = await task;
        Assert.Equal(WaitOutcome.TimedOut, grant.Outcome);
        Assert.Equal(TimeSpan.FromMilliseconds(50), grant.Waited);
        Assert.Equal(0, scheduler.GetStats().WaitingMedium);
        Assert.Equal(1, scheduler.GetStats().TimedOut);
        scheduler.Release(held, 1);
        Assert.Equal(0, scheduler.GetStats().Busy);
    }

    [Fact]
    public async Task AcquireAsync_Cancelled_ThrowsAndLeavesTheQueue()
    {
        var scheduler = NewScheduler(1);
        var flow = scheduler.CreateFlow("a", 1, 10);
        scheduler.TryAcquire(flow, Priority.Medium, out _);
        using var cts = new CancellationTokenSource();

        var task = scheduler.AcquireAsync(flow, Priority.Medium, Timeout.InfiniteTimeSpan, cts.Token);
        await cts.CancelAsync();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await task);
        Assert.Equal(0, scheduler.GetStats().WaitingMedium);
        Assert.Equal(1, scheduler.GetStats().Canceled);
    }

    [Fact]
    public async Task AcquireAsync_GrantedBeforeTheTimeout_ReturnsTheSlot()
    {
        var scheduler = NewScheduler(1);
        var flow = scheduler.CreateFlow("a", 1, 10);
        scheduler.TryAcquire(flow, Priority.Medium, out var held);
        var task = scheduler.AcquireAsync(flow, Priority.Medium, TimeSpan.FromSeconds(1), CancellationToken.None);

        _time.Advance(TimeSpan.FromMilliseconds(10));
        scheduler.Release(held, 1);
        var grant = await task;
        _time.Advance(TimeSpan.FromSeconds(2)); // the disposed timer must not fire into anything

        Assert.True(grant.IsGranted);
        Assert.Equal(1, scheduler.GetStats().Busy);
        Assert.Equal(0, scheduler.GetStats().TimedOut);
    }

    [Fact]
    public void Close_PendingWaiters_FailAsClosed()
    {
        var scheduler = NewScheduler(1);
        var flow = scheduler.CreateFlow("a", 1, 10);
        scheduler.TryAcquire(flow, Priority.Medium, out _);
        var waiter = scheduler.Enqueue(flow, Priority.Low);

        scheduler.Close();

        Assert.Equal(WaitOutcome.Closed, waiter.Outcome);
        Assert.False(scheduler.TryAcquire(flow, Priority.High, out _));
        Assert.Equal(WaitOutcome.Closed, scheduler.Enqueue(flow, Priority.High).Outcome);
    }

    [Fact]
    public void TryAcquireAndRelease_SteadyState_DoNotAllocate()
    {
        var scheduler = NewScheduler(4);
        var flow = scheduler.CreateFlow("a", 1, 10);
        for (var i = 0; i < 100; i++)
        {
            scheduler.TryAcquire(flow, Priority.Medium, out var warm);
            scheduler.Release(warm, 2);
            scheduler.Release(Completed(scheduler.AcquireAsync(flow, Priority.High, TimeSpan.FromSeconds(1), CancellationToken.None)).Slot, 1);
        }
        
        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 1000; i++)
        {
            scheduler.TryAcquire(flow, Priority.Medium, out var slot);
            scheduler.Release(slot, 2);
            var grant = Completed(scheduler.AcquireAsync(flow, Priority.High, TimeSpan.FromSeconds(1), CancellationToken.None));
            scheduler.Release(grant.Slot, 3);
        }
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.Equal(0, allocated);
    }

    /// <summary>The result of a value task that must have completed synchronously.</summary>
    private static SlotGrant Completed(ValueTask<SlotGrant> task)
    {
        Assert.True(task.IsCompletedSuccessfully);
        return task.GetAwaiter().GetResult();
    }

    [Fact]
    public void Release_FlowOfAnotherScheduler_Throws()
    {
        var one = NewScheduler(1);
        var other = NewScheduler(1);
        var flow = one.CreateFlow("a", 1, 1);

        Assert.Throws<ArgumentException>(() => other.TryAcquire(flow, Priority.High, out _));
    }
}
