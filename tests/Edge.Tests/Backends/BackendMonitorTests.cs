using Microsoft.Extensions.Logging.Abstractions;
using MProxy.Edge.Backends;
using MProxy.Edge.Configuration;
using MProxy.TestSupport;

namespace MProxy.Edge.Tests.Backends;

public sealed class BackendMonitorTests
{
    private static readonly HostPort A = new("10.0.0.1", 5432);
    private static readonly HostPort B = new("10.0.0.2", 5432);
    private static readonly HostPort C = new("10.0.0.3", 5432);
    private static readonly TimeSpan Interval = TimeSpan.FromSeconds(1);

    private static CancellationToken Token => TestContext.Current.CancellationToken;

    private static BackendsConfig Config(TopologyMode mode = TopologyMode.Static) => new()
    {
        Mode = mode,
        Hosts = [A, B, C],
        Monitor = new MonitorCredentials("monitor", null, "postgres"),
        HealthCheckInterval = Interval,
        HealthCheckTimeout = TimeSpan.FromMilliseconds(500),
        Breaker = new BreakerSettings { FailuresToOpen = 3, CooldownBase = TimeSpan.FromSeconds(2), CooldownMax = TimeSpan.FromSeconds(8), Jitter = 0 },
        MaxReplicaLagBytes = 1000,
        MaxReplicaLag = TimeSpan.FromSeconds(2),
        FailoverWait = TimeSpan.FromSeconds(10),
        Seed = 1,
    };

    private sealed class Harness : IAsyncDisposable
    {
        public Harness(TopologyMode mode = TopologyMode.Static)
        {
            Monitor = new BackendMonitor("app", Config(mode), Probe, Time, NullLogger.Instance);
            Monitor.TopologyChanged += t =>
            {
                lock (Published)
                    Published.Add(t);
            };
            Monitor.PrimaryChanged += c =>
            {
                lock (PrimaryChanges)
                    PrimaryChanges.Add(c);
            };
        }

        public ManualTimeProvider Time { get; } = new();

        public FakeBackendProbe Probe { get; } = new();

        public BackendMonitor Monitor { get; }

        public List<BackendTopology> Published { get; } = [];

        public List<PrimaryChange> PrimaryChanges { get; } = [];

        public BackendTopology Current => Monitor.Current;

        /// <summary>Advances the clock one interval and runs one round.</summary>
        public async Task RoundAsync()
        {
            Time.Advance(Interval);
            await Monitor.ProbeOnceAsync(Token);
        }

        public void AssertNeverTwoPrimaries()
        {
            lock (Published)
            {
                foreach (var topology in Published)
                {
                    var primaries = 0;
                    foreach (var backend in topology.Backends)
                        primaries += backend.Role == BackendRole.Primary ? 1 : 0;
                    Assert.True(primaries <= 1, $"generation {topology.Generation} has {primaries} primaries");
                    Assert.Equal(topology.PrimaryIndex >= 0 ? 1 : 0, primaries);
                }
            }
        }

        public ValueTask DisposeAsync() => Monitor.DisposeAsync();
    }

    [Fact]
    public async Task Current_StaticModeBeforeAnyProbe_ConfiguredPrimaryAssumedNoReplicaReads()
    {
        await using var h = new Harness();
        Assert.Equal(0, h.Current.PrimaryIndex);
        Assert.True(h.Current.HasUsablePrimary);
        Assert.Empty(h.Current.ReadReplicas);
        Assert.Equal(ReadEligibility.NotProbed, h.Current.Backends[1].Eligibility);
        Assert.True(h.Monitor.WaitForPrimaryAsync(Token).IsCompletedSuccessfully);
    }

    [Fact]
    public async Task ProbeOnce_DiscoverMode_FindsThePrimaryAmongHosts()
    {
        await using var h = new Harness(TopologyMode.Discover);
        Assert.Equal(-1, h.Current.PrimaryIndex);
        h.Probe.Replica(A, new Lsn(1000));
        h.Probe.Primary(B, new Lsn(1000));
        h.Probe.Replica(C, new Lsn(1000));

        await h.RoundAsync();

        Assert.Equal(1, h.Current.PrimaryIndex);
        Assert.Equal([BackendRole.Replica, BackendRole.Primary, BackendRole.Replica], h.Current.Backends.Select(b => b.Role));
        Assert.Equal([0, 2], h.Current.ReadReplicas);
        var change = Assert.Single(h.PrimaryChanges);
        Assert.Equal((null, B, 1L), (change.Previous?.Endpoint, change.Current?.Endpoint, change.Epoch));
    }

    [Fact]
    public async Task ProbeOnce_HealthyReplicas_LagMeasuredAndEligible()
    {
        await using var h = new Harness();
        h.Probe.Primary(A, new Lsn(10_000));
        h.Probe.Replica(B, new Lsn(10_000));
        h.Probe.Replica(C, new Lsn(9_500));

        await h.RoundAsync();

        var b = h.Current.Backends[1];
        var c = h.Current.Backends[2];
        Assert.Equal((0L, TimeSpan.Zero, ReadEligibility.Eligible), (b.LagBytes, b.LagTime, b.Eligibility));
        Assert.Equal((500L, TimeSpan.Zero, ReadEligibility.Eligible), (c.LagBytes, c.LagTime, c.Eligibility));
        Assert.Equal([1, 2], h.Current.ReadReplicas);
        Assert.Equal(new Lsn(10_000), h.Current.Primary!.Lsn);
        Assert.Empty(h.PrimaryChanges); // the assumed primary was confirmed
    }

    [Fact]
    public async Task ProbeOnce_ReplicaStopsReplaying_EjectedByTimeThenBytesThenReadmitted()
    {
        await using var h = new Harness();
        h.Probe.Primary(A, new Lsn(1000));
        h.Probe.Replica(B, new Lsn(1000));
        h.Probe.Replica(C, new Lsn(1000));
        await h.RoundAsync();

        // The primary writes 300 bytes a second; C's replay is paused at 1000.
        for (var second = 1; second <= 2; second++)
        {
            h.Probe.Primary(A, new Lsn(1000 + (300 * (ulong)second)));
            h.Probe.Replica(B, new Lsn(1000 + (300 * (ulong)second)));
            await h.RoundAsync();
            Assert.True(h.Current.Backends[2].ServesReads, $"after {second} s");
        }
        h.Probe.Primary(A, new Lsn(1900));
        h.Probe.Replica(B, new Lsn(1900));
        await h.RoundAsync();
        var c = h.Current.Backends[2];
        Assert.Equal((900L, TimeSpan.FromSeconds(2), ReadEligibility.LagTime), (c.LagBytes, c.LagTime, c.Eligibility)); // 1300 appeared 2 s ago
        Assert.Equal([1], h.Current.ReadReplicas);

        h.Probe.Primary(A, new Lsn(2200));
        h.Probe.Replica(B, new Lsn(2200));
        await h.RoundAsync();
        Assert.Equal(ReadEligibility.LagBytes, h.Current.Backends[2].Eligibility); // 1200 bytes > 1000

        h.Probe.Replica(C, new Lsn(2200)); // replay resumed and caught up
        await h.RoundAsync();
        Assert.Equal((0L, ReadEligibility.Eligible), (h.Current.Backends[2].LagBytes, h.Current.Backends[2].Eligibility));
        Assert.Equal([1, 2], h.Current.ReadReplicas);
    }

    [Fact]
    public async Task ProbeOnce_IdlePrimary_ReplicaNotEjectedHoweverLongAgoItReplayed()
    {
        await using var h = new Harness();
        h.Probe.Primary(A, new Lsn(1000));
        h.Probe.Replica(B, new Lsn(1000));
        h.Probe.Replica(C, new Lsn(1000));
        for (var i = 0; i < 30; i++)
            await h.RoundAsync();
        Assert.Equal([1, 2], h.Current.ReadReplicas);
        Assert.Equal(TimeSpan.Zero, h.Current.Backends[2].LagTime);
    }

    [Fact]
    public async Task ProbeOnce_ReplicaDown_BreakerOpensEjectsAndSkipsProbesUntilCooldown()
    {
        await using var h = new Harness();
        h.Probe.Primary(A, new Lsn(1000));
        h.Probe.Replica(B, new Lsn(1000));
        h.Probe.Replica(C, new Lsn(1000));
        await h.RoundAsync();

        h.Probe.Down(C);
        await h.RoundAsync();
        await h.RoundAsync();
        Assert.True(h.Current.Backends[2].ServesReads); // two failures: still closed
        Assert.False(h.Current.Backends[2].Reachable);
        await h.RoundAsync();
        Assert.Equal((BreakerState.Open, ReadEligibility.BreakerOpen), (h.Current.Backends[2].Breaker, h.Current.Backends[2].Eligibility));
        Assert.Equal([1], h.Current.ReadReplicas);

        var calls = h.Probe.Calls(C);
        await h.RoundAsync(); // 1 s into a 2 s cooldown: not probed
        Assert.Equal(calls, h.Probe.Calls(C));

        h.Probe.Replica(C, new Lsn(1000)); // restarted
        await h.RoundAsync(); // cooldown over: the trial probe succeeds
        Assert.Equal(calls + 1, h.Probe.Calls(C));
        Assert.Equal((BreakerState.Closed, ReadEligibility.Eligible), (h.Current.Backends[2].Breaker, h.Current.Backends[2].Eligibility));
        Assert.Equal([1, 2], h.Current.ReadReplicas);
    }

    [Fact]
    public async Task ProbeOnce_TrialFails_CooldownDoubles()
    {
        await using var h = new Harness();
        h.Probe.Primary(A, new Lsn(1000));
        h.Probe.Replica(B, new Lsn(1000));
        h.Probe.Down(C);
        for (var i = 0; i < 3; i++)
            await h.RoundAsync();
        Assert.Equal(BreakerState.Open, h.Monitor.Breakers[2].State);
        var calls = h.Probe.Calls(C);

        await h.RoundAsync();
        await h.RoundAsync(); // 2 s: trial, fails
        Assert.Equal(calls + 1, h.Probe.Calls(C));
        for (var i = 0; i < 3; i++)
            await h.RoundAsync(); // 3 s into a 4 s cooldown
        Assert.Equal(calls + 1, h.Probe.Calls(C));
        await h.RoundAsync();
        Assert.Equal(calls + 2, h.Probe.Calls(C));
    }

    [Fact]
    public async Task ReportConnectFailure_ReachesThreshold_PublishesWithoutWaitingForARound()
    {
        await using var h = new Harness();
        h.Probe.Primary(A, new Lsn(1000));
        h.Probe.Replica(B, new Lsn(1000));
        h.Probe.Replica(C, new Lsn(1000));
        await h.RoundAsync();
        var generation = h.Current.Generation;

        for (var i = 0; i < 3; i++)
            h.Monitor.ReportConnectFailure(1, "connection refused");

        Assert.True(h.Current.Generation > generation);
        Assert.Equal([2], h.Current.ReadReplicas);
        Assert.Equal(BreakerState.Open, h.Current.Backends[1].Breaker);
    }

    [Fact]
    public async Task ProbeOnce_PrimaryDiesThenReplicaPromoted_PrimarySwitchesNeverTwo()
    {
        await using var h = new Harness();
        h.Probe.Primary(A, new Lsn(5000), timeline: 1);
        h.Probe.Replica(B, new Lsn(5000));
        h.Probe.Replica(C, new Lsn(4900));
        await h.RoundAsync();
        Assert.Equal(0, h.Current.PrimaryIndex);

        h.Probe.Down(A);
        await h.RoundAsync();
        await h.RoundAsync();
        Assert.Equal(0, h.Current.PrimaryIndex); // two failures: the breaker is still closed
        await h.RoundAsync();
        Assert.Equal(-1, h.Current.PrimaryIndex);
        Assert.False(h.Current.HasUsablePrimary);
        Assert.Equal(BackendRole.StalePrimary, h.Current.Backends[0].Role);
        var lost = Assert.Single(h.PrimaryChanges);
        Assert.Equal((A, (HostPort?)null), (lost.Previous!.Endpoint, lost.Current?.Endpoint));
        Assert.Equal([1, 2], h.Current.ReadReplicas); // replicas keep serving reads

        h.Probe.Primary(B, new Lsn(5100), timeline: 2); // promoted
        await h.RoundAsync();

        Assert.Equal(1, h.Current.PrimaryIndex);
        Assert.Equal(2, h.Current.PrimaryEpoch);
        Assert.Equal([2], h.Current.ReadReplicas);
        var promoted = h.PrimaryChanges[1];
        Assert.Equal(((HostPort?)null, B, 2L), (promoted.Previous?.Endpoint, promoted.Current!.Endpoint, promoted.Epoch));
        h.AssertNeverTwoPrimaries();
    }

    [Fact]
    public async Task ProbeOnce_OldPrimaryComesBackAfterFailover_StaysStale()
    {
        await using var h = new Harness();
        h.Probe.Primary(A, new Lsn(5000), timeline: 1);
        h.Probe.Replica(B, new Lsn(5000));
        h.Probe.Replica(C, new Lsn(5000));
        await h.RoundAsync();
        h.Probe.Down(A);
        for (var i = 0; i < 3; i++)
            await h.RoundAsync();
        h.Probe.Primary(B, new Lsn(5100), timeline: 2);
        await h.RoundAsync();

        h.Probe.Primary(A, new Lsn(5050), timeline: 1); // restarted as a primary, not rewound
        for (var i = 0; i < 10; i++)
            await h.RoundAsync();

        Assert.Equal(1, h.Current.PrimaryIndex);
        Assert.Equal((BackendRole.StalePrimary, BreakerState.Closed, false), (h.Current.Backends[0].Role, h.Current.Backends[0].Breaker, h.Current.Backends[0].ServesReads));
        h.AssertNeverTwoPrimaries();
    }

    [Fact]
    public async Task ProbeOnce_ReplicaPromotedWhileOldPrimaryAlive_NewerTimelineWinsAtOnce()
    {
        await using var h = new Harness();
        h.Probe.Primary(A, new Lsn(5000), timeline: 1);
        h.Probe.Replica(B, new Lsn(5000));
        h.Probe.Replica(C, new Lsn(5000));
        await h.RoundAsync();

        h.Probe.Primary(B, new Lsn(5000), timeline: 2);
        await h.RoundAsync();

        Assert.Equal(1, h.Current.PrimaryIndex);
        Assert.Equal(BackendRole.StalePrimary, h.Current.Backends[0].Role);
        Assert.Equal([2], h.Current.ReadReplicas);
        h.AssertNeverTwoPrimaries();
    }

    [Fact]
    public async Task ProbeOnce_SecondHostClaimsPrimaryOnSameTimeline_KeepsTheCurrentOne()
    {
        await using var h = new Harness();
        h.Probe.Primary(A, new Lsn(5000), timeline: 3);
        h.Probe.Replica(B, new Lsn(5000));
        h.Probe.Replica(C, new Lsn(5000));
        await h.RoundAsync();

        h.Probe.Primary(C, new Lsn(9000), timeline: 3); // split brain: more WAL, same timeline
        await h.RoundAsync();

        Assert.Equal(0, h.Current.PrimaryIndex);
        Assert.Equal(BackendRole.StalePrimary, h.Current.Backends[2].Role);
        Assert.Empty(h.PrimaryChanges);
        h.AssertNeverTwoPrimaries();
    }

    [Fact]
    public async Task ProbeOnce_DiscoverModeTwoClaimants_HigherTimelineThenHigherLsnWins()
    {
        await using var h = new Harness(TopologyMode.Discover);
        h.Probe.Primary(A, new Lsn(9000), timeline: 1);
        h.Probe.Primary(B, new Lsn(1000), timeline: 2);
        h.Probe.Primary(C, new Lsn(5000), timeline: 2);

        await h.RoundAsync();

        Assert.Equal(2, h.Current.PrimaryIndex);
        h.AssertNeverTwoPrimaries();
    }

    [Fact]
    public async Task ProbeOnce_PrimaryDemoted_AnotherClaimantTakesOver()
    {
        await using var h = new Harness();
        h.Probe.Primary(A, new Lsn(5000), timeline: 1);
        h.Probe.Replica(B, new Lsn(5000));
        h.Probe.Replica(C, new Lsn(5000));
        await h.RoundAsync();

        h.Probe.Replica(A, new Lsn(5000)); // rebuilt as a standby
        h.Probe.Primary(B, new Lsn(5200), timeline: 2);
        await h.RoundAsync();

        Assert.Equal(1, h.Current.PrimaryIndex);
        Assert.Equal(BackendRole.Replica, h.Current.Backends[0].Role);
        h.AssertNeverTwoPrimaries();
    }

    [Fact]
    public async Task WaitForPrimaryAsync_DuringFailover_CompletesWhenPromotedHostAppears()
    {
        await using var h = new Harness();
        h.Probe.Primary(A, new Lsn(5000), timeline: 1);
        h.Probe.Replica(B, new Lsn(5000));
        h.Probe.Replica(C, new Lsn(5000));
        await h.RoundAsync();
        h.Probe.Down(A);
        for (var i = 0; i < 3; i++)
            await h.RoundAsync();

        var wait = h.Monitor.WaitForPrimaryAsync(Token).AsTask();
        Assert.False(wait.IsCompleted);
        await h.RoundAsync();
        Assert.False(wait.IsCompleted);

        h.Probe.Primary(C, new Lsn(5100), timeline: 2);
        await h.RoundAsync();

        var primary = await wait.WaitAsync(TimeSpan.FromSeconds(30), Token);
        Assert.Equal(C, primary.Endpoint);
    }

    [Fact]
    public async Task WaitForPrimaryAsync_AfterReportedConnectFailure_WaitsForTheNextGoodProbe()
    {
        await using var h = new Harness();
        h.Probe.Primary(A, new Lsn(5000), timeline: 1);
        h.Probe.Replica(B, new Lsn(5000));
        h.Probe.Replica(C, new Lsn(5000));
        await h.RoundAsync();

        h.Monitor.ReportConnectFailure(0, "connection reset");
        var wait = h.Monitor.WaitForPrimaryAsync(Token).AsTask();
        Assert.False(wait.IsCompleted);

        await h.RoundAsync(); // the primary answers its probe again
        Assert.Equal(A, (await wait.WaitAsync(TimeSpan.FromSeconds(30), Token)).Endpoint);
    }

    [Fact]
    public async Task WaitForPrimaryAsync_PoolThenConnects_WakesWithoutARound()
    {
        await using var h = new Harness();
        h.Monitor.ReportConnectFailure(0, "connection reset");
        var wait = h.Monitor.WaitForPrimaryAsync(Token).AsTask();
        Assert.False(wait.IsCompleted);

        h.Monitor.ReportConnectSuccess(0);

        Assert.Equal(A, (await wait.WaitAsync(TimeSpan.FromSeconds(30), Token)).Endpoint);
    }

    [Fact]
    public async Task WaitForPrimaryAsync_NoPrimaryWithinFailoverWait_Throws()
    {
        await using var h = new Harness(TopologyMode.Discover);
        h.Probe.Replica(A, new Lsn(1));
        h.Probe.Replica(B, new Lsn(1));
        h.Probe.Replica(C, new Lsn(1));
        await h.RoundAsync();

        var wait = h.Monitor.WaitForPrimaryAsync(Token).AsTask();
        h.Time.Advance(TimeSpan.FromSeconds(9));
        Assert.False(wait.IsCompleted);
        h.Time.Advance(TimeSpan.FromSeconds(1));

        var error = await Assert.ThrowsAsync<BackendUnavailableException>(() => wait.WaitAsync(TimeSpan.FromSeconds(30), Token));
        Assert.StartsWith("mproxy: no primary of database \"app\"", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ProbeOnce_ProbeIgnoresItsTimeout_RoundStillEndsAndCountsAFailure()
    {
        await using var h = new Harness();
        h.Probe.Primary(A, new Lsn(1));
        h.Probe.Replica(B, new Lsn(1));
        h.Probe.Hang(C, honourCancel: false);

        h.Time.Advance(Interval);
        var round = h.Monitor.ProbeOnceAsync(Token);
        Assert.False(round.IsCompleted);
        h.Time.Advance(TimeSpan.FromMilliseconds(500));
        await round.WaitAsync(TimeSpan.FromSeconds(30), Token);

        Assert.StartsWith("no answer within 500 ms", h.Current.Backends[2].LastError, StringComparison.Ordinal);
        Assert.Equal(1, h.Monitor.Breakers[2].ConsecutiveFailures);

        await h.RoundAsync(); // still hanging: not probed again, counted as failed
        Assert.Equal(1, h.Probe.Calls(C));
        Assert.Equal("the previous health check has not finished", h.Current.Backends[2].LastError);
        Assert.Equal(2, h.Monitor.Breakers[2].ConsecutiveFailures);
    }

    [Fact]
    public async Task Start_Loop_ProbesEveryIntervalOnTheClock()
    {
        await using var h = new Harness();
        h.Probe.Primary(A, new Lsn(1));
        h.Probe.Replica(B, new Lsn(1));
        h.Probe.Replica(C, new Lsn(1));

        h.Monitor.Start();
        await Poll.UntilAsync(() => h.Probe.Calls(A) == 1 && h.Time.NextDue is not null);
        Assert.Equal(h.Time.GetUtcNow() + Interval, h.Time.NextDue);

        h.Time.Advance(Interval);
        await Poll.UntilAsync(() => h.Probe.Calls(A) == 2 && h.Time.NextDue is not null);
        Assert.Equal([1, 2], h.Current.ReadReplicas);
    }
}
