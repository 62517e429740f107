using MProxy.Edge.Pooling;
using MProxy.TestSupport;

namespace MProxy.Edge.Tests.Pooling;

public sealed class ServerPoolTests
{
    private readonly ManualTimeProvider _time = new();
    private readonly FakeFactory _factory;

    public ServerPoolTests() => _factory = new FakeFactory(_time);

    private ServerPool<FakeConnection> Pool(int size = 2, int minSize = 0, int waitMs = 1000, int idleMs = 60_000, int lifetimeMs = 3_600_000, int checkAfterIdleMs = 30_000) =>
        new("db/user", new PoolSettings(size, minSize, TimeSpan.FromMilliseconds(waitMs), TimeSpan.FromSeconds(5),
            TimeSpan.FromMilliseconds(idleMs), TimeSpan.FromMilliseconds(lifetimeMs), TimeSpan.FromMilliseconds(checkAfterIdleMs)), _factory, _time);

    [Fact]
    public async Task Acquire_ReusesReturnedConnection_MostRecentFirst()
    {
        var pool = Pool();
        var a = await pool.AcquireAsync(default);
        var b = await pool.AcquireAsync(default);
        pool.Return(a);
        pool.Return(b);
        Assert.Same(b, await pool.AcquireAsync(default));
        Assert.Equal(2, _factory.Opened);
    }

    [Fact]
    public async Task Acquire_PoolFull_WaitsThenTimesOutWithPoolNameSizeAndWait()
    {
        var pool = Pool(size: 1, waitMs: 500);
        await pool.AcquireAsync(default);
        var waiting = pool.AcquireAsync(default).AsTask();
        Assert.False(waiting.IsCompleted);
        Assert.Equal(1, pool.GetStats().Waiting);
        _time.Advance(TimeSpan.FromMilliseconds(499));
        Assert.False(waiting.IsCompleted);
        _time.Advance(TimeSpan.FromMilliseconds(2));
        var error = await Assert.ThrowsAsync<PoolTimeoutException>(() => waiting);
        Assert.Contains("db/user", error.Message);
        Assert.Contains("1 of 1", error.Message);
        Assert.Equal(0, pool.GetStats().Waiting);
    }

    [Fact]
    public async Task Acquire_WaitersJoiningAtDifferentTimes_EachTimesOutAtItsOwnDeadline()
    {
        var pool = Pool(size: 1, waitMs: 500);
        await pool.AcquireAsync(default);
        var first = pool.AcquireAsync(default).AsTask();
        _time.Advance(TimeSpan.FromMilliseconds(300));
        var second = pool.AcquireAsync(default).AsTask();
        _time.Advance(TimeSpan.FromMilliseconds(201));
        await Assert.ThrowsAsync<PoolTimeoutException>(() => first);
        Assert.False(second.IsCompleted);
        Assert.Equal(1, pool.GetStats().Waiting);
        _time.Advance(TimeSpan.FromMilliseconds(298));
        Assert.False(second.IsCompleted);
        _time.Advance(TimeSpan.FromMilliseconds(2));
        await Assert.ThrowsAsync<PoolTimeoutException>(() => second);
        Assert.Equal(0, pool.GetStats().Waiting);
    }

    [Fact]
    public async Task Acquire_ManyWaiters_OneTimerForTheQueue_AndHandOffsArmNone()
    {
        // A waited lease is the common case under load: it must not cost a timer operation of its own.
        var pool = Pool(size: 1, waitMs: 1000);
        var held = await pool.AcquireAsync(default);
        var waiting = Enumerable.Range(0, 10).Select(_ => pool.AcquireAsync(default).AsTask()).ToList();
        Assert.Equal(10, pool.GetStats().Waiting);
        Assert.Equal(1, _time.ArmedTimers);
        foreach (var next in waiting)
        {
            pool.Return(held);
            held = await next;
            Assert.True(_time.ArmedTimers <= 1);
        }
        Assert.Equal(1, _factory.Opened);
    }

    [Fact]
    public async Task Acquire_PoolFull_TimesOutEvenWhenTimersFireEarly()
    {
        // System timers tick on a coarser clock than Stopwatch and can fire before the deadline the
        // pool computed; the waiter must wait out the rest, not hang. Both waits reuse one waiter.
        var early = new EarlyTimers(_time);
        var pool = new ServerPool<FakeConnection>("db/user", new PoolSettings(1, 0, TimeSpan.FromMilliseconds(300), TimeSpan.FromSeconds(5),
            TimeSpan.FromMinutes(1), TimeSpan.FromHours(1), TimeSpan.FromSeconds(30)), new FakeFactory(early), early);
        await pool.AcquireAsync(default);
        for (var i = 0; i < 2; i++)
        {
            var waiting = pool.AcquireAsync(default).AsTask();
            _time.Advance(TimeSpan.FromMilliseconds(299));
            Assert.False(waiting.IsCompleted);
            _time.Advance(TimeSpan.FromMilliseconds(5));
            Assert.True(waiting.IsCompleted, "the waiter never timed out");
            await Assert.ThrowsAsync<PoolTimeoutException>(() => waiting);
        }
    }

    [Fact]
    public async Task Return_HandsConnectionToWaitersInFifoOrder()
    {
        var pool = Pool(size: 1, waitMs: 10_000);
        var held = await pool.AcquireAsync(default);
        var first = pool.AcquireAsync(default).AsTask();
        var second = pool.AcquireAsync(default).AsTask();
        pool.Return(held);
        Assert.Same(held, await first);
        Assert.False(second.IsCompleted);
        pool.Return(held);
        Assert.Same(held, await second);
    }

    [Fact]
    public async Task Return_WithWaitersOnTwoLoops_HandsToTheFirstOnTheConnectionsLoop()
    {
        var pool = Pool(size: 2, waitMs: 10_000);
        var a = await pool.AcquireAsync(default);
        var b = await pool.AcquireAsync(default);
        (a.Affinity, b.Affinity) = (1, 0);
        var first = pool.AcquireAsync(affinity: 0, default).AsTask();
        var second = pool.AcquireAsync(affinity: 1, default).AsTask();
        var third = pool.AcquireAsync(affinity: 1, default).AsTask();
        pool.Return(a); // returned on loop 1: the first waiter on loop 1 gets it, ahead of the first in line
        Assert.Same(a, await second);
        Assert.False(first.IsCompleted);
        Assert.False(third.IsCompleted);
        pool.Return(b);
        Assert.Same(b, await first);
        pool.Return(a);
        Assert.Same(a, await third);
    }

    [Fact]
    public async Task Return_TheFirstWaiterIsPassedOverForAnotherLoopAtMostTwice()
    {
        var pool = Pool(size: 1, waitMs: 10_000);
        var held = await pool.AcquireAsync(default);
        held.Affinity = 1;
        var first = pool.AcquireAsync(affinity: 0, default).AsTask();
        var behind = Enumerable.Range(0, 3).Select(_ => pool.AcquireAsync(affinity: 1, default).AsTask()).ToList();
        pool.Return(held);
        Assert.Same(held, await behind[0]);
        pool.Return(held);
        Assert.Same(held, await behind[1]);
        pool.Return(held); // passed over twice: its turn, though a waiter on the connection's loop is still in line
        Assert.Same(held, await first);
        Assert.False(behind[2].IsCompleted);
        pool.Return(held);
        Assert.Same(held, await behind[2]);
    }

    [Fact]
    public async Task Return_AWaiterOnTheConnectionsLoopFarBackInLine_DoesNotOvertake()
    {
        var pool = Pool(size: 1, waitMs: 10_000);
        var held = await pool.AcquireAsync(default);
        held.Affinity = 1;
        var others = Enumerable.Range(0, 9).Select(_ => pool.AcquireAsync(affinity: 0, default).AsTask()).ToList();
        var far = pool.AcquireAsync(affinity: 1, default).AsTask(); // ninth behind the first: beyond the look-ahead
        pool.Return(held);
        Assert.Same(held, await others[0]);
        Assert.False(far.IsCompleted);
    }

    [Fact]
    public async Task Return_AWaiterOnTheConnectionsLoopThatArrivedOverAMillisecondAfterTheFirst_DoesNotOvertake()
    {
        var pool = Pool(size: 1, waitMs: 10_000);
        var held = await pool.AcquireAsync(default);
        held.Affinity = 1;
        var first = pool.AcquireAsync(affinity: 0, default).AsTask();
        _time.Advance(TimeSpan.FromMilliseconds(1.5));
        var later = pool.AcquireAsync(affinity: 1, default).AsTask();
        pool.Return(held); // arrival order holds: the other client came noticeably later
        Assert.Same(held, await first);
        Assert.False(later.IsCompleted);
        pool.Return(held);
        Assert.Same(held, await later);
    }

    [Fact]
    public async Task Acquire_WithIdleConnectionsOnTwoLoops_LeasesTheMostRecentOnTheClientsLoop()
    {
        var pool = Pool(size: 3);
        var a = await pool.AcquireAsync(default);
        var b = await pool.AcquireAsync(default);
        var c = await pool.AcquireAsync(default);
        (a.Affinity, b.Affinity, c.Affinity) = (0, 1, 1);
        pool.Return(a);
        pool.Return(b);
        pool.Return(c); // the stack, top first: c (loop 1), b (loop 1), a (loop 0)
        Assert.Same(a, await pool.AcquireAsync(affinity: 0, default));
        Assert.Same(c, await pool.AcquireAsync(affinity: 1, default));
        Assert.Same(b, await pool.AcquireAsync(affinity: 0, default)); // none left on loop 0: the most recent
        Assert.Equal(3, _factory.Opened);
    }

    [Fact]
    public async Task Acquire_NeverOpensMoreThanSize()
    {
        var pool = Pool(size: 3, waitMs: 10_000);
        var leased = new List<FakeConnection>();
        for (var i = 0; i < 3; i++)
            leased.Add(await pool.AcquireAsync(default));
        var waiters = Enumerable.Range(0, 5).Select(_ => pool.AcquireAsync(default).AsTask()).ToList();
        Assert.Equal(3, _factory.Opened);
        foreach (var c in leased)
            pool.Return(c);
        await Task.WhenAll(waiters.Take(3));
        Assert.Equal(3, _factory.Opened);
        Assert.Equal(3, pool.GetStats().Total);
    }

    [Fact]
    public async Task LimitSlots_CapsTheSize_ThenRaisingItServesWaitersAtOnce()
    {
        var pool = Pool(size: 4, minSize: 3, waitMs: 10_000);
        pool.LimitSlots(1);
        Assert.Equal(1, pool.Settings.Size);
        Assert.Equal(1, pool.Settings.MinSize);
        var held = await pool.AcquireAsync(default);
        var waiters = Enumerable.Range(0, 3).Select(_ => pool.AcquireAsync(default).AsTask()).ToList();
        Assert.Equal(1, _factory.Opened);
        Assert.Equal(3, pool.GetStats().Waiting);

        pool.LimitSlots(3);   // the grant grew: two waiters get new connections without anyone returning one

        await Task.WhenAll(waiters.Take(2));
        Assert.Equal(3, _factory.Opened);
        Assert.False(waiters[2].IsCompleted);
        pool.LimitSlots(null);   // no global limit: back to the configured size of 4
        Assert.NotNull(await waiters[2]);
        Assert.Equal(4, pool.GetStats().Total);
        Assert.Equal(4, pool.Settings.Size);
        Assert.Equal(3, pool.Settings.MinSize);
        pool.Return(held);
    }

    [Fact]
    public async Task LimitSlots_ZeroGrant_StillKeepsOneConnection()
    {
        var pool = Pool(size: 2);
        pool.LimitSlots(0);
        Assert.Equal(1, pool.Settings.Size);
        Assert.NotNull(await pool.AcquireAsync(default));
    }

    [Fact]
    public async Task Reconfigure_LargerSize_ServesWaitersAtOnce_AndKeepsTheSlotCap()
    {
        var pool = Pool(size: 1, waitMs: 10_000);
        await pool.AcquireAsync(default);
        var waiter = pool.AcquireAsync(default).AsTask();
        Assert.False(waiter.IsCompleted);

        pool.Reconfigure(pool.Settings with { Size = 2 });

        Assert.NotNull(await waiter);
        Assert.Equal(2, _factory.Opened);
        pool.LimitSlots(1);
        pool.Reconfigure(pool.Settings with { Size = 5 });
        Assert.Equal(1, pool.Settings.Size);   // a reload does not lift the policy tier's cap
    }

    [Fact]
    public async Task Return_BrokenConnection_IsClosed_AndWaiterOpensANewOne()
    {
        var pool = Pool(size: 1, waitMs: 10_000);
        var held = await pool.AcquireAsync(default);
        var waiter = pool.AcquireAsync(default).AsTask();
        held.IsBroken = true;
        pool.Return(held);
        var fresh = await waiter;
        Assert.NotSame(held, fresh);
        Assert.Contains(held, _factory.Closed);
        Assert.Equal(1, pool.GetStats().Total);
    }

    [Fact]
    public async Task OpenFailure_FreesTheSlot()
    {
        var pool = Pool(size: 1);
        _factory.FailNextOpen = true;
        await Assert.ThrowsAsync<InvalidOperationException>(async () => await pool.AcquireAsync(default));
        Assert.Equal(0, pool.GetStats().Total);
        Assert.NotNull(await pool.AcquireAsync(default));
    }

    [Fact]
    public async Task Maintain_ClosesConnectionsIdlePastTimeout_KeepingMinSize()
    {
        var pool = Pool(size: 3, minSize: 1, idleMs: 1000);
        var a = await pool.AcquireAsync(default);
        var b = await pool.AcquireAsync(default);
        pool.Return(a);
        pool.Return(b);
        _time.Advance(TimeSpan.FromMilliseconds(1001));
        pool.Maintain();
        Assert.Equal(1, pool.GetStats().Total);
        Assert.Single(_factory.Closed);
    }

    [Fact]
    public async Task Maintain_OpensUpToMinSize()
    {
        var pool = Pool(size: 3, minSize: 2);
        pool.Maintain();
        await _factory.WaitForOpenedAsync(2);
        Assert.Equal(2, pool.GetStats().Total);
    }

    [Fact]
    public async Task Return_PastLifetime_ClosesInsteadOfPooling()
    {
        var pool = Pool(size: 2, lifetimeMs: 1000);
        var a = await pool.AcquireAsync(default);
        _time.Advance(TimeSpan.FromMilliseconds(1500));
        pool.Return(a);
        Assert.Contains(a, _factory.Closed);
        Assert.Equal(0, pool.GetStats().Total);
    }

    [Fact]
    public async Task Acquire_AfterLongIdle_ChecksConnection_AndDiscardsAFailingOne()
    {
        var pool = Pool(size: 2, checkAfterIdleMs: 1000);
        var a = await pool.AcquireAsync(default);
        pool.Return(a);
        _time.Advance(TimeSpan.FromSeconds(2));
        _factory.CheckResult = false;
        var b = await pool.AcquireAsync(default);
        Assert.NotSame(a, b);
        Assert.Equal(1, _factory.Checks);
        Assert.Contains(a, _factory.Closed);
    }

    [Fact]
    public async Task Return_HandedToAWaiter_IsNotChecked_HoweverLongThePoolHasBeenBusy()
    {
        // Busy for longer than checkAfterIdleMs, every lease a hand-off: no connection was idle.
        var pool = Pool(size: 1, waitMs: 60_000, checkAfterIdleMs: 1000);
        var a = await pool.AcquireAsync(default);
        for (var i = 0; i < 3; i++)
        {
            var next = pool.AcquireAsync(default).AsTask();
            _time.Advance(TimeSpan.FromSeconds(2));
            pool.Return(a);
            Assert.Same(a, await next);
        }
        Assert.Equal(0, _factory.Checks);

        pool.Return(a); // now it is idle: after a while it is checked again
        _time.Advance(TimeSpan.FromSeconds(2));
        Assert.Same(a, await pool.AcquireAsync(default));
        Assert.Equal(1, _factory.Checks);
    }

    [Fact]
    public async Task Close_FailsWaitersAndClosesIdle()
    {
        var pool = Pool(size: 1, waitMs: 10_000);
        var a = await pool.AcquireAsync(default);
        var waiter = pool.AcquireAsync(default).AsTask();
        pool.Close("host db1:5432: its circuit breaker opened");
        var failed = await Assert.ThrowsAsync<PoolClosedException>(() => waiter);
        Assert.Equal("host db1:5432: its circuit breaker opened", failed.Reason);
        Assert.EndsWith("was closed: host db1:5432: its circuit breaker opened", failed.Message, StringComparison.Ordinal);
        pool.Close("a later close"); // the first reason stays
        pool.Return(a);
        Assert.Contains(a, _factory.Closed);
        var late = await Assert.ThrowsAsync<PoolClosedException>(async () => await pool.AcquireAsync(default));
        Assert.Equal("host db1:5432: its circuit breaker opened", late.Reason);
    }

    [Fact]
    public async Task Acquire_Cancelled_LeavesTheQueue()
    {
        var pool = Pool(size: 1, waitMs: 10_000);
        var a = await pool.AcquireAsync(default);
        using var cts = new CancellationTokenSource();
        var waiter = pool.AcquireAsync(cts.Token).AsTask();
        await cts.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => waiter);
        Assert.Equal(0, pool.GetStats().Waiting);
        pool.Return(a);
        Assert.Same(a, await pool.AcquireAsync(default));
    }

    /// <summary>Timers that fire at 90% of their due time, as a coarse system clock may.</summary>
    private sealed class EarlyTimers(ManualTimeProvider inner) : TimeProvider
    {
        public override long TimestampFrequency => inner.TimestampFrequency;
        public override long GetTimestamp() => inner.GetTimestamp();
        public override DateTimeOffset GetUtcNow() => inner.GetUtcNow();
        public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period) =>
            new Early(inner.CreateTimer(callback, state, Shorten(dueTime), period));

        private static TimeSpan Shorten(TimeSpan due) => due == Timeout.InfiniteTimeSpan ? due : due * 0.9;

        private sealed class Early(ITimer timer) : ITimer
        {
            public bool Change(TimeSpan dueTime, TimeSpan period) => timer.Change(Shorten(dueTime), period);
            public void Dispose() => timer.Dispose();
            public ValueTask DisposeAsync() => timer.DisposeAsync();
        }
    }

    internal sealed class FakeConnection(long id, long openedAt) : IPooledConnection
    {
        public long Id { get; } = id;
        public bool IsBroken { get; set; }
        public long OpenedAt { get; } = openedAt;
        public long IdleSince { get; set; } = openedAt;
        public int Affinity { get; set; } = -1;
    }

    private sealed class FakeFactory(TimeProvider time) : IServerConnectionFactory<FakeConnection>
    {
        private readonly List<FakeConnection> _closed = [];
        private int _opened;

        public int Opened => Volatile.Read(ref _opened);
        public int Checks { get; private set; }
        public bool FailNextOpen { get; set; }
        public bool CheckResult { get; set; } = true;
        public IReadOnlyList<FakeConnection> Closed { get { lock (_closed) return [.. _closed]; } }

        public ValueTask<FakeConnection> OpenAsync(CancellationToken cancellationToken)
        {
            if (FailNextOpen)
            {
                FailNextOpen = false;
                throw new InvalidOperationException("server down");
            }
            var id = Interlocked.Increment(ref _opened);
            return ValueTask.FromResult(new FakeConnection(id, time.GetTimestamp()));
        }

        public ValueTask<bool> CheckAsync(FakeConnection connection, CancellationToken cancellationToken)
        {
            Checks++;
            return ValueTask.FromResult(CheckResult);
        }

        public void Close(FakeConnection connection, string reason)
        {
            lock (_closed)
                _closed.Add(connection);
        }

        public async Task WaitForOpenedAsync(int count)
        {
            for (var i = 0; i < 1000 && Opened < count; i++)
                await Task.Yield();
        }
    }
}
