using MProxy.Edge.Backends;
using MProxy.TestSupport;

namespace MProxy.Edge.Tests.Backends;

public sealed class CircuitBreakerTests
{
    private static readonly BreakerSettings Settings = new()
    {
        FailuresToOpen = 3,
        CooldownBase = TimeSpan.FromSeconds(1),
        CooldownMax = TimeSpan.FromSeconds(30),
        Jitter = 0.2,
    };

    private static CircuitBreaker Breaker(ManualTimeProvider time, BreakerSettings? settings = null, int seed = 7) =>
        new(0, settings ?? Settings, time, new Random(seed));

    private static void Fail(CircuitBreaker breaker, int times)
    {
        for (var i = 0; i < times; i++)
            breaker.RecordFailure("refused");
    }

    private static TimeSpan Cooldown(CircuitBreaker breaker, ManualTimeProvider time) => breaker.RetryAt!.Value - time.GetUtcNow();

    [Fact]
    public void RecordFailure_BelowThreshold_StaysClosed()
    {
        var breaker = Breaker(new ManualTimeProvider());
        Fail(breaker, 2);
        Assert.Equal(BreakerState.Closed, breaker.State);
        Assert.Equal(2, breaker.ConsecutiveFailures);
        Assert.Null(breaker.RetryAt);
    }

    [Fact]
    public void RecordFailure_ThresholdReached_OpensAndRaisesEvent()
    {
        var breaker = Breaker(new ManualTimeProvider());
        var changes = new List<BreakerTransition>();
        breaker.StateChanged += changes.Add;

        Fail(breaker, 3);

        Assert.Equal(BreakerState.Open, breaker.State);
        var change = Assert.Single(changes);
        Assert.Equal((BreakerState.Closed, BreakerState.Open, 1, "refused"), (change.From, change.To, change.Trips, change.Reason));
        Assert.InRange(change.Cooldown, TimeSpan.FromMilliseconds(800), TimeSpan.FromSeconds(1));
    }

    [Fact]
    public void RecordSuccess_BetweenFailures_ResetsTheCount()
    {
        var breaker = Breaker(new ManualTimeProvider());
        Fail(breaker, 2);
        breaker.RecordSuccess();
        Fail(breaker, 2);
        Assert.Equal(BreakerState.Closed, breaker.State);
        Assert.Equal(2, breaker.ConsecutiveFailures);
    }

    [Fact]
    public void TryBeginTrial_BeforeCooldownEnds_RefusesThenHalfOpens()
    {
        var time = new ManualTimeProvider();
        var breaker = Breaker(time);
        Fail(breaker, 3);
        var cooldown = Cooldown(breaker, time);
        var changes = new List<BreakerTransition>();
        breaker.StateChanged += changes.Add;

        time.Advance(cooldown - TimeSpan.FromTicks(1));
        Assert.False(breaker.TryBeginTrial());
        Assert.Equal(BreakerState.Open, breaker.State);

        time.Advance(TimeSpan.FromTicks(1));
        Assert.True(breaker.TryBeginTrial());
        Assert.Equal(BreakerState.HalfOpen, breaker.State);
        Assert.Equal((BreakerState.Open, BreakerState.HalfOpen), (changes[0].From, changes[0].To));
        Assert.True(breaker.TryBeginTrial()); // half-open: the trial may run
    }

    [Fact]
    public void RecordSuccess_HalfOpen_ClosesAndResetsBackoff()
    {
        var time = new ManualTimeProvider();
        var breaker = Breaker(time, Settings with { Jitter = 0 });
        Fail(breaker, 3);
        time.Advance(TimeSpan.FromSeconds(1));
        breaker.TryBeginTrial();

        breaker.RecordSuccess();

        Assert.Equal(BreakerState.Closed, breaker.State);
        Assert.Equal(0, breaker.ConsecutiveFailures);
        Assert.Equal(0, breaker.Trips);
        Fail(breaker, 3);
        Assert.Equal(TimeSpan.FromSeconds(1), Cooldown(breaker, time)); // back to the base cooldown
    }

    [Fact]
    public void RecordFailure_HalfOpen_ReopensWithDoubledCooldown()
    {
        var time = new ManualTimeProvider();
        var breaker = Breaker(time, Settings with { Jitter = 0 });
        Fail(breaker, 3);
        Assert.Equal(TimeSpan.FromSeconds(1), Cooldown(breaker, time));
        time.Advance(TimeSpan.FromSeconds(1));
        Assert.True(breaker.TryBeginTrial());

        breaker.RecordFailure("still refused"); // one failure is enough in half-open

        Assert.Equal(BreakerState.Open, breaker.State);
        Assert.Equal(2, breaker.Trips);
        Assert.Equal(TimeSpan.FromSeconds(2), Cooldown(breaker, time));
    }

    [Fact]
    public void RecordSuccess_WhileOpen_DoesNotClose()
    {
        var breaker = Breaker(new ManualTimeProvider());
        Fail(breaker, 3);
        breaker.RecordSuccess();
        Assert.Equal(BreakerState.Open, breaker.State);
    }

    [Fact]
    public void Cooldown_RepeatedTrialFailures_GrowsExponentiallyUpToMax()
    {
        var time = new ManualTimeProvider();
        var breaker = Breaker(time, Settings with { Jitter = 0 });
        Fail(breaker, 3);
        var cooldowns = new List<double>();
        for (var trip = 1; trip <= 8; trip++)
        {
            var cooldown = Cooldown(breaker, time);
            cooldowns.Add(cooldown.TotalSeconds);
            time.Advance(cooldown);
            Assert.True(breaker.TryBeginTrial());
            breaker.RecordFailure("refused");
        }
        Assert.Equal([1, 2, 4, 8, 16, 30, 30, 30], cooldowns);
    }

    [Fact]
    public void Cooldown_WithJitter_StaysWithinBoundsAndVaries()
    {
        var time = new ManualTimeProvider();
        var breaker = Breaker(time, seed: 12345);
        Fail(breaker, 3);
        var seen = new HashSet<long>();
        for (var trip = 1; trip <= 40; trip++)
        {
            var ceiling = Math.Min(30, Math.Pow(2, Math.Min(trip - 1, 10)));
            var cooldown = Cooldown(breaker, time);
            Assert.InRange(cooldown.TotalSeconds, ceiling * 0.8, ceiling);
            seen.Add(cooldown.Ticks);
            time.Advance(cooldown);
            breaker.TryBeginTrial();
            breaker.RecordFailure("refused");
        }
        Assert.True(seen.Count > 30, $"jitter produced only {seen.Count} distinct cooldowns");
    }

    [Fact]
    public void Cooldown_SameSeed_SameSequence()
    {
        static List<TimeSpan> Run(int seed)
        {
            var time = new ManualTimeProvider();
            var breaker = Breaker(time, seed: seed);
            Fail(breaker, 3);
            var result = new List<TimeSpan>();
            for (var i = 0; i < 10; i++)
            {
                var cooldown = Cooldown(breaker, time);
                result.Add(cooldown);
                time.Advance(cooldown);
                breaker.TryBeginTrial();
                breaker.RecordFailure("refused");
            }
            return result;
        }
        Assert.Equal(Run(99), Run(99));
        Assert.NotEqual(Run(99), Run(100));
    }
}
