using MProxy.Edge.Qos;
using MProxy.TestSupport;

namespace MProxy.Edge.Tests.Qos;

public sealed class RuBucketTests
{
    private const double Tolerance = 1e-6;
    private readonly ManualTimeProvider _time = new();

    [Fact]
    public void TryAdmit_FullBucket_AdmitsAndChargesTheBase()
    {
        var bucket = new RuBucket(new RuBucketSettings(100, 50, 20), _time);

        Assert.True(bucket.TryAdmit(6, out var retryAfter));

        Assert.Equal(TimeSpan.Zero, retryAfter);
        Assert.Equal(44, bucket.Balance, Tolerance);
    }

    [Fact]
    public void Balance_AfterTime_RefillsAtTheRateUpToTheBurst()
    {
        var bucket = new RuBucket(new RuBucketSettings(100, 50, 20), _time);
        bucket.Charge(50);

        _time.Advance(TimeSpan.FromMilliseconds(200));
        Assert.Equal(20, bucket.Balance, Tolerance);

        _time.Advance(TimeSpan.FromSeconds(10));
        Assert.Equal(50, bucket.Balance, Tolerance);
    }

    [Fact]
    public void Charge_BeyondTheDebtBound_BooksUpToTheBoundAndForgivesTheRest()
    {
        var bucket = new RuBucket(new RuBucketSettings(100, 50, 20), _time);

        var booked = bucket.Charge(100);

        Assert.Equal(70, booked, Tolerance);
        Assert.Equal(-20, bucket.Balance, Tolerance);
        var usage = bucket.TakeUsage();
        Assert.Equal(70, usage.Charged, Tolerance);
        Assert.Equal(30, usage.Forgiven, Tolerance);
    }

    [Fact]
    public void TryAdmit_InDebt_RefusedWithTheExactTimeUntilOutOfDebt()
    {
        var bucket = new RuBucket(new RuBucketSettings(100, 10, 50), _time);
        bucket.Charge(35); // balance -25: a quarter of a second at 100 RU/s

        Assert.False(bucket.TryAdmit(1, out var retryAfter));
        Assert.Equal(TimeSpan.FromMilliseconds(250), retryAfter);

        _time.Advance(retryAfter - TimeSpan.FromTicks(1));
        Assert.False(bucket.TryAdmit(1, out var remaining));
        Assert.Equal(TimeSpan.FromTicks(1), remaining);

        _time.Advance(TimeSpan.FromTicks(1));
        Assert.True(bucket.TryAdmit(1, out _));
    }

    [Fact]
    public void TryAdmit_AtZeroBalance_AdmitsAndGoesIntoDebt()
    {
        var bucket = new RuBucket(new RuBucketSettings(10, 0, 100), _time);

        Assert.True(bucket.TryAdmit(6, out _));
        Assert.Equal(-6, bucket.Balance, Tolerance);
        Assert.False(bucket.TryAdmit(6, out var retryAfter));
        Assert.Equal(TimeSpan.FromMilliseconds(600), retryAfter);
    }

    [Fact]
    public void TryAdmit_ZeroRateInDebt_RetryAfterIsTheNoRefillDefault()
    {
        var bucket = new RuBucket(new RuBucketSettings(0, 0, 10), _time);
        bucket.Charge(5);

        Assert.False(bucket.TryAdmit(1, out var retryAfter));

        Assert.Equal(RuBucket.NoRefillRetryAfter, retryAfter);
    }

    [Fact]
    public void Grant_InDebt_PaysTheDebtFirstThenAddsLeasedRu()
    {
        var bucket = new RuBucket(new RuBucketSettings(0, 0, 100), _time);
        bucket.Charge(30);
        Assert.False(bucket.TryAdmit(1, out _));

        bucket.Grant(50, TimeSpan.FromSeconds(1));

        Assert.Equal(20, bucket.Balance, Tolerance);
        Assert.True(bucket.TryAdmit(1, out _));
    }

    [Fact]
    public void Grant_LeaseEnds_UnspentRuIsDroppedAndReported()
    {
        var bucket = new RuBucket(new RuBucketSettings(0, 0, 100), _time);
        bucket.Grant(40, TimeSpan.FromSeconds(1));
        bucket.Charge(15);

        _time.Advance(TimeSpan.FromSeconds(1));

        Assert.Equal(0, bucket.Balance, Tolerance);
        var usage = bucket.TakeUsage();
        Assert.Equal(40, usage.Granted, Tolerance);
        Assert.Equal(15, usage.Charged, Tolerance);
        Assert.Equal(25, usage.LeaseExpired, Tolerance);
        Assert.Equal(0, bucket.TakeUsage().Charged);
    }

    [Fact]
    public void Charge_LeaseAndLocalRate_SpendsTheLeaseFirst()
    {
        var bucket = new RuBucket(new RuBucketSettings(10, 10, 10), _time);
        bucket.Grant(5, TimeSpan.FromSeconds(10));

        bucket.Charge(8);

        Assert.Equal(7, bucket.Balance, Tolerance); // lease 5 spent, local 10 - 3
        _time.Advance(TimeSpan.FromSeconds(20));
        Assert.Equal(10, bucket.Balance, Tolerance);
        Assert.Equal(0, bucket.TakeUsage().LeaseExpired, Tolerance);
    }

    [Fact]
    public void Reconfigure_SmallerBounds_ClampsTheBalance()
    {
        var bucket = new RuBucket(new RuBucketSettings(100, 100, 100), _time);

        bucket.Reconfigure(new RuBucketSettings(100, 30, 5));
        Assert.Equal(30, bucket.Balance, Tolerance);

        bucket.Charge(100);
        Assert.Equal(-5, bucket.Balance, Tolerance);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    [InlineData(5)]
    [InlineData(6)]
    [InlineData(7)]
    [InlineData(8)]
    public void Charge_RandomSchedule_BookedWorkInAnyWindowIsBoundedByRateBurstAndDebt(int seed)
    {
        var random = new Random(seed);
        var settings = new RuBucketSettings(RuPerSecond: random.Next(10, 1000), Burst: random.Next(0, 500), DebtMax: random.Next(0, 500));
        var bucket = new RuBucket(settings, _time);
        var start = _time.GetTimestamp();
        var events = new List<(double Seconds, double Booked)>();
        var admitted = 0;
        for (var i = 0; i < 600; i++)
        {
            _time.Advance(TimeSpan.FromTicks(random.Next(0, 2_000_000)));
            var seconds = _time.GetElapsedTime(start).TotalSeconds;
            if (random.Next(3) == 0)
            {
                bucket.TakeUsage(); // reset, so that the usage below is the admission's booking alone
                if (bucket.TryAdmit(random.Next(2) == 0 ? 1 : 6, out _))
                    admitted++;
                events.Add((seconds, bucket.TakeUsage().Charged));
            }
            else
            {
                // Latency and bytes of in-flight statements: sometimes huge (a runaway), usually small.
                var ru = random.Next(10) == 0 ? random.NextDouble() * 5000 : random.NextDouble() * 50;
                events.Add((seconds, bucket.Charge(ru)));
            }
        }

        Assert.True(admitted > 0);
        for (var i = 0; i < events.Count; i++)
        {
            var booked = 0.0;
            for (var j = i; j < events.Count; j++)
            {
                booked += events[j].Booked;
                var window = events[j].Seconds - events[i].Seconds;
                var bound = settings.RuPerSecond * window + settings.Burst + settings.DebtMax;
                Assert.True(booked <= bound + Tolerance, $"seed {seed}: {booked} RU booked in [{events[i].Seconds}, {events[j].Seconds}] s exceeds {bound}");
            }
        }
    }

    [Theory]
    [InlineData(11)]
    [InlineData(12)]
    [InlineData(13)]
    [InlineData(14)]
    public void Charge_RandomScheduleWithLeases_BookedWorkIsBoundedByRefillPlusGrants(int seed)
    {
        var random = new Random(seed);
        var settings = new RuBucketSettings(RuPerSecond: random.Next(0, 200), Burst: random.Next(0, 200), DebtMax: random.Next(0, 200));
        var bucket = new RuBucket(settings, _time);
        var start = _time.GetTimestamp();
        // Per event: time, RU booked, RU granted, and the RU granted before it that could still be unspent.
        var events = new List<(double Seconds, double Booked, double Granted)>();
        for (var i = 0; i < 500; i++)
        {
            _time.Advance(TimeSpan.FromTicks(random.Next(0, 3_000_000)));
            var seconds = _time.GetElapsedTime(start).TotalSeconds;
            switch (random.Next(4))
            {
                case 0:
                    var amount = random.NextDouble() * 300;
                    bucket.Grant(amount, TimeSpan.FromMilliseconds(random.Next(1, 2000)));
                    events.Add((seconds, 0, amount));
                    break;
                case 1:
                    bucket.TakeUsage();
                    bucket.TryAdmit(1, out _);
                    events.Add((seconds, bucket.TakeUsage().Charged, 0));
                    break;
                default:
                    events.Add((seconds, bucket.Charge(random.NextDouble() * 120), 0));
                    break;
            }
        }

        for (var i = 0; i < events.Count; i++)
        {
            var granted = 0.0;
            for (var k = 0; k < i; k++)
                granted += events[k].Granted; // leased RU carried into the window cannot exceed all earlier grants
            var booked = 0.0;
            for (var j = i; j < events.Count; j++)
            {
                booked += events[j].Booked;
                granted += events[j].Granted;
                var bound = settings.RuPerSecond * (events[j].Seconds - events[i].Seconds) + settings.Burst + settings.DebtMax + granted;
                Assert.True(booked <= bound + Tolerance, $"seed {seed}: {booked} RU booked exceeds {bound}");
            }
        }
    }

    // ------------------------------------------------------------------ the line of budget waiters

    /// <summary>A bucket 10 RU in debt (100 ms at 100 RU/s, burst 10) with two statements in line, each of base 1 and a 1-s wait.</summary>
    private RuBucket TwoInLine(out RuBudgetTicket first, out RuBudgetTicket second)
    {
        var bucket = new RuBucket(new RuBucketSettings(100, 10, 50), _time);
        bucket.Charge(20);
        Assert.False(bucket.TryAdmitOrQueue(1, TimeSpan.FromSeconds(1), out _, out var a));
        Assert.False(bucket.TryAdmitOrQueue(1, TimeSpan.FromSeconds(1), out _, out var b));
        Assert.NotNull(a);
        Assert.NotNull(b);
        (first, second) = (a, b);
        return bucket;
    }

    [Fact]
    public void Line_WaitersAreAdmittedInArrivalOrder_WhoeverAsksFirst()
    {
        var bucket = new RuBucket(new RuBucketSettings(100, 10, 50), _time);
        bucket.Charge(20); // balance -10: 100 ms
        Assert.False(bucket.TryAdmitOrQueue(1, TimeSpan.FromSeconds(1), out var firstTurn, out var first));
        Assert.False(bucket.TryAdmitOrQueue(1, TimeSpan.FromSeconds(1), out var secondTurn, out var second));
        Assert.NotNull(first);
        Assert.NotNull(second);
        Assert.Equal(TimeSpan.FromMilliseconds(100), firstTurn);
        Assert.Equal(TimeSpan.FromMilliseconds(110), secondTurn); // the debt, then the base of the one ahead
        Assert.Equal(2, bucket.Waiting);

        _time.Advance(TimeSpan.FromMilliseconds(100));
        Assert.False(bucket.TryAdmit(second, 1, out var stillAhead), "the second waiter went before the first");
        Assert.Equal(TimeSpan.FromMilliseconds(10), stillAhead);
        Assert.True(bucket.TryAdmit(first, 1, out _));
        Assert.Equal(1, bucket.Waiting);

        Assert.False(bucket.TryAdmit(second, 1, out var afterBase));
        Assert.Equal(TimeSpan.FromMilliseconds(10), afterBase); // the first one's base, repaid
        _time.Advance(afterBase);
        Assert.True(bucket.TryAdmit(second, 1, out _));
        Assert.Equal(0, bucket.Waiting);
    }

    [Fact]
    public void Line_ANewcomerIsNotAdmittedAheadOfAWaiter_EvenOutOfDebt()
    {
        var bucket = new RuBucket(new RuBucketSettings(100, 10, 50), _time);
        bucket.Charge(20);
        Assert.False(bucket.TryAdmitOrQueue(1, TimeSpan.FromSeconds(1), out _, out var waiter));
        _time.Advance(TimeSpan.FromMilliseconds(150)); // out of debt, but the waiter has not asked yet

        Assert.False(bucket.TryAdmit(1, out var newcomerTurn));
        Assert.True(newcomerTurn > TimeSpan.Zero);
        Assert.False(bucket.TryAdmitOrQueue(1, TimeSpan.FromSeconds(1), out _, out var behind));
        Assert.NotNull(behind);

        Assert.True(bucket.TryAdmit(waiter!, 1, out _));
        Assert.True(bucket.TryAdmit(behind!, 1, out _)); // 4 RU left after the first base: still out of debt
    }

    [Fact]
    public void Line_AFullBucket_AdmitsWhoeverAsks_WhileTheFirstIsLate()
    {
        var bucket = TwoInLine(out var first, out var second);
        _time.Advance(TimeSpan.FromMilliseconds(199)); // 9.9 RU: not full, the line holds
        Assert.False(bucket.TryAdmit(1, out _));
        Assert.False(bucket.TryAdmit(second, 1, out _));

        _time.Advance(TimeSpan.FromMilliseconds(1)); // full: more refill would be lost
        Assert.True(bucket.TryAdmit(1, out _)); // a newcomer goes ahead of the line
        Assert.False(bucket.TryAdmit(second, 1, out _)); // 9 RU, no longer full: the line holds again
        _time.Advance(TimeSpan.FromMilliseconds(10));
        Assert.True(bucket.TryAdmit(second, 1, out _)); // full again: the second goes ahead of the late first
        Assert.Equal(1, bucket.Waiting);
        Assert.True(bucket.TryAdmit(first, 1, out _)); // the first kept its place and goes when it asks
        Assert.Equal(0, bucket.Waiting);
    }

    [Fact]
    public void Line_ATurnBeyondTheWait_GetsNoTicket()
    {
        var bucket = new RuBucket(new RuBucketSettings(100, 10, 50), _time);
        bucket.Charge(40); // 300 ms of debt

        Assert.False(bucket.TryAdmitOrQueue(1, TimeSpan.FromMilliseconds(200), out var turn, out var ticket));

        Assert.Null(ticket);
        Assert.Equal(TimeSpan.FromMilliseconds(300), turn);
        Assert.Equal(0, bucket.Waiting);
    }

    [Fact]
    public void Line_AWaiterThatLeaves_LetsTheNextGo()
    {
        var bucket = TwoInLine(out var first, out var second);
        _time.Advance(TimeSpan.FromMilliseconds(100));

        bucket.Leave(first);
        bucket.Leave(first); // twice is harmless

        Assert.True(bucket.TryAdmit(second, 1, out _));
    }

    [Fact]
    public void Line_AWaiterThatStopsAsking_IsDroppedAfterItsDeadline()
    {
        // A burst large enough that the bucket does not fill meanwhile (a full one admits anyone).
        var bucket = new RuBucket(new RuBucketSettings(100, 1000, 50), _time);
        bucket.Charge(1020);
        Assert.False(bucket.TryAdmitOrQueue(1, TimeSpan.FromMilliseconds(200), out _, out _)); // never asks again
        Assert.False(bucket.TryAdmitOrQueue(1, TimeSpan.FromSeconds(5), out _, out var patient));

        _time.Advance(TimeSpan.FromMilliseconds(200) + RuBucket.AbandonedAfter - TimeSpan.FromTicks(1));
        Assert.False(bucket.TryAdmit(patient!, 1, out _));
        _time.Advance(TimeSpan.FromTicks(1));
        Assert.True(bucket.TryAdmit(patient!, 1, out _));
    }

    [Fact]
    public void Line_LeaseFedBucket_HandsOverWithoutWaitingForARefill()
    {
        var bucket = new RuBucket(new RuBucketSettings(0, 0, 50), _time);
        bucket.Charge(5); // in debt with no local refill
        Assert.False(bucket.TryAdmitOrQueue(1, TimeSpan.FromSeconds(3), out var waitLease, out var first));
        Assert.False(bucket.TryAdmitOrQueue(1, TimeSpan.FromSeconds(3), out _, out var second));
        Assert.Equal(RuBucket.NoRefillRetryAfter, waitLease);

        bucket.Grant(100, TimeSpan.FromSeconds(10));
        Assert.False(bucket.TryAdmit(second!, 1, out var turn));
        Assert.Equal(RuBucket.MinTurnRetryAfter, turn); // out of debt: only the first is ahead
        Assert.True(bucket.TryAdmit(first!, 1, out _));
        Assert.True(bucket.TryAdmit(second!, 1, out _));
    }

    [Fact]
    public async Task Line_TheNextInLine_IsWokenWhenTheFirstIsAdmitted_NotByTheClock()
    {
        var bucket = TwoInLine(out var first, out var second);
        Assert.True(first.IsFirst);
        Assert.False(second.IsFirst);
        var woken = second.WaitAsync(TimeSpan.FromSeconds(1), _time, CancellationToken.None);
        _time.Advance(TimeSpan.FromMilliseconds(100)); // out of debt; the second's own timer is far off

        Assert.False(woken.IsCompleted);
        Assert.True(bucket.TryAdmit(first, 1, out _));
        await woken.WaitAsync(Poll.DefaultTimeout);
        Assert.True(second.IsFirst);
        Assert.False(bucket.TryAdmit(second, 1, out var turn));
        Assert.Equal(TimeSpan.FromMilliseconds(10), turn); // now first, its turn is the first's base repaid
    }

    [Fact]
    public async Task Line_AFirstThatLeaves_WakesTheNext_AndAWakeBeforeTheWaitIsKept()
    {
        var bucket = TwoInLine(out var first, out var second);
        Assert.False(bucket.TryAdmitOrQueue(1, TimeSpan.FromSeconds(1), out _, out var third));

        bucket.Leave(first); // the second is not waiting yet: its next wait returns at once
        Assert.True(second.IsFirst);
        Assert.True(second.WaitAsync(TimeSpan.FromSeconds(1), _time, CancellationToken.None).IsCompleted);
        var secondWaits = second.WaitAsync(TimeSpan.FromSeconds(1), _time, CancellationToken.None);
        Assert.False(secondWaits.IsCompleted); // the wake was used up
        var thirdWaits = third!.WaitAsync(TimeSpan.FromSeconds(1), _time, CancellationToken.None);

        bucket.Leave(third); // not first: nobody is woken
        Assert.False(secondWaits.IsCompleted);
        _time.Advance(TimeSpan.FromSeconds(1));
        await Task.WhenAll(secondWaits, thirdWaits).WaitAsync(Poll.DefaultTimeout); // their timers
    }

    [Fact]
    public async Task Line_AGrantOrNewSettings_WakeTheFirst()
    {
        var bucket = new RuBucket(new RuBucketSettings(1, 10, 50), _time);
        bucket.Charge(20); // 10 s of debt at 1 RU/s
        Assert.False(bucket.TryAdmitOrQueue(1, TimeSpan.FromSeconds(30), out _, out var first));

        var wait = first!.WaitAsync(TimeSpan.FromSeconds(10), _time, CancellationToken.None);
        bucket.Grant(20, TimeSpan.FromSeconds(5));
        await wait.WaitAsync(Poll.DefaultTimeout);
        Assert.True(bucket.TryAdmit(first, 1, out _));

        bucket.Charge(40);
        Assert.False(bucket.TryAdmitOrQueue(1, TimeSpan.FromSeconds(60), out _, out var next));
        wait = next!.WaitAsync(TimeSpan.FromSeconds(10), _time, CancellationToken.None);
        bucket.Reconfigure(new RuBucketSettings(1000, 10, 50));
        await wait.WaitAsync(Poll.DefaultTimeout);
    }

    [Fact]
    public async Task Line_AGrantAdmitsTheWholeLine_ByWakeUpsAlone()
    {
        // Lease-fed (no refill) and the clock never moves: the waiters' timers never fire, so every
        // admission after the first comes from the wake-up of the one before it, with the waiters on
        // the thread pool. A lost wake-up hangs here (and fails at the timeout).
        var bucket = new RuBucket(new RuBucketSettings(0, 0, 100), _time);
        bucket.Charge(10);
        var tickets = new RuBudgetTicket[20];
        for (var i = 0; i < tickets.Length; i++)
        {
            Assert.False(bucket.TryAdmitOrQueue(1, TimeSpan.FromMinutes(1), out _, out var ticket));
            tickets[i] = ticket!;
        }
        var waiters = tickets.Select(ticket => Task.Run(async () =>
        {
            while (!bucket.TryAdmit(ticket, 1, out _))
                await ticket.WaitAsync(TimeSpan.FromMinutes(1), _time, CancellationToken.None);
        })).ToArray();
        await Poll.UntilAsync(() => _time.ArmedTimers == tickets.Length, "every statement waits"); // one timer per wait

        bucket.Grant(100, TimeSpan.FromMinutes(5)); // pays the debt of 10; 90 RU leased

        await Task.WhenAll(waiters).WaitAsync(Poll.DefaultTimeout);
        Assert.Equal(0, bucket.Waiting);
        Assert.Equal(70, bucket.Balance, Tolerance);
    }

    [Fact]
    public async Task Ticket_WaitCancelled_Throws()
    {
        var bucket = new RuBucket(new RuBucketSettings(100, 10, 50), _time);
        bucket.Charge(20);
        Assert.False(bucket.TryAdmitOrQueue(1, TimeSpan.FromSeconds(1), out _, out var ticket));
        using var cancel = new CancellationTokenSource();

        var wait = ticket!.WaitAsync(TimeSpan.FromSeconds(1), _time, cancel.Token);
        await cancel.CancelAsync();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => wait.WaitAsync(Poll.DefaultTimeout));
    }
}
