using MProxy.Abstractions;
using MProxy.Edge.Qos;
using MProxy.TestSupport;

namespace MProxy.Edge.Tests.Qos;

public sealed class CoDelTests : IDisposable
{
    private static readonly CoDelSettings Standard = new() { Target = TimeSpan.FromMilliseconds(5), Interval = TimeSpan.FromMilliseconds(100) };
    private readonly ManualTimeProvider _time = new();
    private readonly QosScheduler _scheduler;

    public CoDelTests() => _scheduler = new QosScheduler("orders", 2, Standard, _time);

    public void Dispose() => _scheduler.Dispose();

    /// <summary>
    /// A 1 ms-step load generator: arrivals per class, a fixed service time per slot, and the
    /// outcome of every waiter.
    /// </summary>
    private sealed class Load(QosScheduler scheduler, ManualTimeProvider time)
    {
        private readonly List<(SchedulerSlot Slot, long DoneAtMs)> _running = [];
        private readonly List<SchedulerWaiter> _pending = [];
        private long _nowMs;

        public Dictionary<Priority, int> Shed { get; } = new() { [Priority.High] = 0, [Priority.Medium] = 0, [Priority.Low] = 0 };

        public Dictionary<Priority, int> Granted { get; } = new() { [Priority.High] = 0, [Priority.Medium] = 0, [Priority.Low] = 0 };

        public TimeSpan LongestHighWait { get; private set; }

        public int Pending => _pending.Count;

        /// <summary>Runs <paramref name="ms"/> steps; each step first adds the arrivals <paramref name="arrive"/> asks for.</summary>
        public void Run(int ms, int serviceMs, Action<long, Action<SchedulerFlow, Priority>> arrive)
        {
            for (var step = 0; step < ms; step++)
            {
                arrive(_nowMs, (flow, priority) => _pending.Add(scheduler.Enqueue(flow, priority)));
                Collect(serviceMs);
                time.Advance(TimeSpan.FromMilliseconds(1));
                _nowMs++;
                for (var i = _running.Count - 1; i >= 0; i--)
                {
                    if (_running[i].DoneAtMs <= _nowMs)
                    {
                        var slot = _running[i].Slot;
                        _running.RemoveAt(i);
                        scheduler.Release(slot, serviceMs);
                    }
                }
                Collect(serviceMs);
            }
        }

        private void Collect(int serviceMs)
        {
            for (var i = _pending.Count - 1; i >= 0; i--)
            {
                var waiter = _pending[i];
                switch (waiter.Outcome)
                {
                    case WaitOutcome.Pending:
                        continue;
                    case WaitOutcome.Granted:
                        Granted[waiter.Priority]++;
                        _running.Add((waiter.Slot, _nowMs + serviceMs));
                        if (waiter.Priority == Priority.High && waiter.Waited > LongestHighWait)
                            LongestHighWait = waiter.Waited;
                        break;
                    case WaitOutcome.Shed:
                        Shed[waiter.Priority]++;
                        Assert.True(waiter.RetryAfter >= Standard.Interval);
                        break;
                    default:
                        Assert.Fail($"unexpected outcome {waiter.Outcome}");
                        break;
                }
                _pending.RemoveAt(i);
            }
        }
    }

    [Fact]
    public void Run_QueueingDelayBelowTarget_ShedsNothing()
    {
        var flow = _scheduler.CreateFlow("a", 1, 100);
        var load = new Load(_scheduler, _time);

        // Two slots, 3 ms service (0.67 per ms), bursts of 3 every 5 ms (0.6 per ms): waits stay at 0–3 ms.
        load.Run(5000, serviceMs: 3, (now, enqueue) =>
        {
            if (now % 5 == 0)
                for (var i = 0; i < 3; i++)
                    enqueue(flow, Priority.Low);
        });

        Assert.Equal(0, load.Shed[Priority.Low]);
        Assert.Equal(0, _scheduler.GetStats().Shed);
        Assert.True(load.Granted[Priority.Low] >= 2990, $"{load.Granted[Priority.Low]} granted");
    }

    [Fact]
    public void Run_LowFloodWithHighTrickle_ShedsLowNeverHigh()
    {
        var flooder = _scheduler.CreateFlow("flooder", 1, 100);
        var vip = _scheduler.CreateFlow("vip", 1, 100);
        var load = new Load(_scheduler, _time);

        // Capacity: 2 slots / 5 ms = 0.4 per ms. LOW arrives at 0.5 per ms, HIGH at 0.1 per ms.
        load.Run(4000, serviceMs: 5, (now, enqueue) =>
        {
            if (now % 2 == 0)
                enqueue(flooder, Priority.Low);
            if (now % 10 == 0)
                enqueue(vip, Priority.High);
        });

        Assert.True(load.Shed[Priority.Low] > 100, $"only {load.Shed[Priority.Low]} LOW waiters were shed");
        Assert.Equal(0, load.Shed[Priority.High]);
        Assert.Equal(400, load.Granted[Priority.High]);
        Assert.True(load.LongestHighWait <= TimeSpan.FromMilliseconds(5), $"HIGH waited {load.LongestHighWait}");
    }

    [Fact]
    public void Run_LoadDropsAfterAFlood_StopsSheddingOnceTheQueueDrains()
    {
        var flow = _scheduler.CreateFlow("a", 1, 100);
        var load = new Load(_scheduler, _time);
        // Flood: 0.5 arrivals per ms against 0.4 per ms of capacity.
        load.Run(3000, serviceMs: 5, (now, enqueue) =>
        {
            if (now % 2 == 0)
                enqueue(flow, Priority.Low);
        });
        var shedDuringFlood = _scheduler.GetStats().Shed;
        Assert.True(shedDuringFlood > 0);

        // Light load: one arrival every 5 ms; the backlog drains first.
        load.Run(3000, serviceMs: 5, (now, enqueue) =>
        {
            if (now % 5 == 0)
                enqueue(flow, Priority.Low);
        });
        var shedAfterDrain = _scheduler.GetStats().Shed;
        load.Run(3000, serviceMs: 5, (now, enqueue) =>
        {
            if (now % 5 == 0)
                enqueue(flow, Priority.Low);
        });

        Assert.Equal(shedAfterDrain, _scheduler.GetStats().Shed);
        Assert.Equal(0, load.Pending);
    }

    [Fact]
    public void Timer_StalledPool_ShedsOnTheControlLawSchedule()
    {
        var flow = _scheduler.CreateFlow("a", 1, 100);
        _scheduler.TryAcquire(flow, Priority.Medium, out _);
        _scheduler.TryAcquire(flow, Priority.Medium, out _);
        var waiters = new List<SchedulerWaiter>();
        for (var i = 0; i < 10; i++)
            waiters.Add(_scheduler.Enqueue(flow, Priority.Low));

        // Above target at 5 ms; first drop an interval later (105 ms); then every interval/√count.
        var expected = new List<double> { 105 };
        for (var count = 1; expected.Count < 9; count++)
            expected.Add(expected[^1] + 100 / Math.Sqrt(count));

        var elapsedMs = 0.0;
        for (var i = 0; i < expected.Count; i++)
        {
            var justBefore = expected[i] - 0.01;
            _time.Advance(TimeSpan.FromMilliseconds(justBefore - elapsedMs));
            Assert.Equal(i, _scheduler.GetStats().Shed);
            _time.Advance(TimeSpan.FromMilliseconds(0.02));
            Assert.Equal(i + 1, _scheduler.GetStats().Shed);
            elapsedMs = expected[i] + 0.01;
        }

        // The last waiter is not a standing queue: it stays until its own timeout.
        _time.Advance(TimeSpan.FromSeconds(10));
        Assert.Equal(9, _scheduler.GetStats().Shed);
        Assert.Equal(WaitOutcome.Pending, waiters[^1].Outcome);
        Assert.Equal(WaitOutcome.Shed, waiters[0].Outcome); // oldest first
    }

    [Fact]
    public void Timer_HighQueueStandsWithLowWaiting_ShedsLowFirstThenHigh()
    {
        var flow = _scheduler.CreateFlow("a", 1, 100);
        _scheduler.TryAcquire(flow, Priority.High, out _);
        _scheduler.TryAcquire(flow, Priority.High, out _);
        var high = new List<SchedulerWaiter>();
        for (var i = 0; i < 4; i++)
            high.Add(_scheduler.Enqueue(flow, Priority.High));
        _time.Advance(TimeSpan.FromMilliseconds(1));
        var low = new List<SchedulerWaiter>();
        for (var i = 0; i < 2; i++)
            low.Add(_scheduler.Enqueue(flow, Priority.Low));

        _time.Advance(TimeSpan.FromMilliseconds(209)); // HIGH's queue drops at 105 and 205 ms: both LOW
        Assert.All(low, w => Assert.Equal(WaitOutcome.Shed, w.Outcome));
        Assert.All(high, w => Assert.Equal(WaitOutcome.Pending, w.Outcome));

        _time.Advance(TimeSpan.FromMilliseconds(70)); // next drop at 205 + 100/√2 ms: HIGH, nothing lower is left
        Assert.Equal(WaitOutcome.Shed, high[0].Outcome);
        Assert.Equal(WaitOutcome.Pending, high[1].Outcome);
    }

    [Fact]
    public void Timer_TwoTenantsInTheShedClass_ShedsTheMostServedTenantFirst()
    {
        var noisy = _scheduler.CreateFlow("noisy", 1, 100);
        var quiet = _scheduler.CreateFlow("quiet", 1, 100);
        // The noisy tenant has been served a lot in LOW (its finish tag is far ahead).
        for (var i = 0; i < 20; i++)
        {
            _scheduler.TryAcquire(noisy, Priority.Low, out var slot);
            _scheduler.Release(slot, 50);
        }
        _scheduler.TryAcquire(quiet, Priority.High, out _);
        _scheduler.TryAcquire(quiet, Priority.High, out _);
        var quietWaiter = _scheduler.Enqueue(quiet, Priority.Low);
        var noisyWaiters = new List<SchedulerWaiter>();
        for (var i = 0; i < 3; i++)
            noisyWaiters.Add(_scheduler.Enqueue(noisy, Priority.Low));

        _time.Advance(TimeSpan.FromMilliseconds(110));

        Assert.Equal(1, _scheduler.GetStats().Shed);
        Assert.Equal(WaitOutcome.Shed, noisyWaiters[0].Outcome);
        Assert.Equal(WaitOutcome.Pending, quietWaiter.Outcome);
    }

    [Fact]
    public void Timer_WaitersOfACappedTenant_AreNotAStandingQueue()
    {
        var capped = _scheduler.CreateFlow("capped", 1, 1);
        _scheduler.TryAcquire(capped, Priority.Low, out _);
        for (var i = 0; i < 5; i++)
            _scheduler.Enqueue(capped, Priority.Low);

        _time.Advance(TimeSpan.FromSeconds(5));

        Assert.Equal(0, _scheduler.GetStats().Shed);
        Assert.Equal(5, _scheduler.GetStats().WaitingLow);
    }

    [Fact]
    public void Timer_CoDelDisabled_NeverSheds()
    {
        using var scheduler = new QosScheduler("p", 1, new CoDelSettings { Enabled = false }, _time);
        var flow = scheduler.CreateFlow("a", 1, 10);
        scheduler.TryAcquire(flow, Priority.Low, out _);
        for (var i = 0; i < 5; i++)
            scheduler.Enqueue(flow, Priority.Low);

        _time.Advance(TimeSpan.FromSeconds(5));

        Assert.Equal(0, scheduler.GetStats().Shed);
    }
}
