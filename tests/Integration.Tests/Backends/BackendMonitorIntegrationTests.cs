using Microsoft.Extensions.Logging.Abstractions;
using MProxy.Edge.Backends;
using MProxy.Edge.Routing;
using MProxy.TestSupport;
using Npgsql;

namespace MProxy.Integration.Tests.Backends;

/// <summary>
/// The real probe and monitor against a real primary and streaming replica. The tests of this class
/// share one pair and leave it as they found it (replay resumed, replica running).
/// </summary>
public sealed class BackendMonitorIntegrationTests(PrimaryReplicaPair pair) : IClassFixture<PrimaryReplicaPair>
{
    private static CancellationToken Token => TestContext.Current.CancellationToken;

    private BackendMonitor Monitor(BackendsConfig config) =>
        new("app", config, PrimaryReplicaPair.Probe(), TimeProvider.System, NullLogger.Instance);

    [Fact]
    public async Task ProbeAsync_PrimaryAndReplica_ReportRolesAndPositions()
    {
        await using var probe = PrimaryReplicaPair.Probe();
        await pair.WriteAsync(10_000);

        var primary = await probe.ProbeAsync(pair.PrimaryEndpoint, Token);
        Assert.Null(primary.Error);
        Assert.False(primary.InRecovery);
        Assert.False(primary.Lsn.IsNone);
        Assert.Equal(1u, primary.Timeline);

        // The replica catches up with what the primary had: poll its replay position (a real server).
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        BackendProbeResult replica;
        while (true)
        {
            replica = await probe.ProbeAsync(pair.ReplicaEndpoint, Token);
            Assert.Null(replica.Error);
            if (replica.Lsn >= primary.Lsn || DateTime.UtcNow > deadline)
                break;
            await Task.Delay(50, Token);
        }
        Assert.True(replica.InRecovery);
        Assert.True(replica.Lsn >= primary.Lsn, $"replay {replica.Lsn} never reached {primary.Lsn}");
        Assert.True(replica.ReceiveLsn >= replica.Lsn);
        Assert.NotNull(replica.ReplayAge);

        // One connection per host, reused: a second probe sees positions that do not go back.
        var again = await probe.ProbeAsync(pair.PrimaryEndpoint, Token);
        Assert.True(again.Lsn >= primary.Lsn);
    }

    [Fact]
    public async Task ProbeAsync_NothingListening_ReportsFailure()
    {
        await using var probe = PrimaryReplicaPair.Probe();
        var result = await probe.ProbeAsync(new("127.0.0.1", TestSupport.FreePort.Next()), Token);
        Assert.False(result.Succeeded);
    }

    [Fact]
    public async Task Monitor_ReplayPaused_ReplicaEjectedByBytesThenReadmittedAfterResume()
    {
        await using var monitor = Monitor(pair.Config() with { MaxReplicaLagBytes = 256 * 1024 });
        monitor.Start();
        await TopologyWaiter.WaitForAsync(monitor, t => t.PrimaryIndex == 0 && t.ReadReplicas.Contains(1), "the replica to take reads");

        await pair.Replica.ExecuteAsync("SELECT pg_wal_replay_pause()");
        try
        {
            await pair.WriteAsync(1024 * 1024);
            var lagging = await TopologyWaiter.WaitForAsync(monitor, t => t.Backends[1].Eligibility == ReadEligibility.LagBytes, "the paused replica to be ejected");
            Assert.Empty(lagging.ReadReplicas);
            Assert.True(lagging.Backends[1].LagBytes > 256 * 1024);
        }
        finally
        {
            await pair.Replica.ExecuteAsync("SELECT pg_wal_replay_resume()");
        }

        var admitted = await TopologyWaiter.WaitForAsync(monitor, t => t.Backends[1].ServesReads, "the resumed replica to be readmitted");
        Assert.True(admitted.Backends[1].LagBytes <= 256 * 1024);
    }

    [Fact]
    public async Task Monitor_ReplayPausedWhilePrimaryBusy_ReplicaEjectedByTimeThenReadmitted()
    {
        await using var monitor = Monitor(pair.Config() with { MaxReplicaLag = TimeSpan.FromSeconds(1) });
        monitor.Start();
        await TopologyWaiter.WaitForAsync(monitor, t => t.ReadReplicas.Contains(1), "the replica to take reads");

        await pair.Replica.ExecuteAsync("SELECT pg_wal_replay_pause()");
        using var stopWriting = CancellationTokenSource.CreateLinkedTokenSource(Token);
        var writer = Task.Run(async () =>
        {
            // A busy primary: a small write every 100 ms.
            while (!stopWriting.IsCancellationRequested)
            {
                await pair.WriteAsync(1000);
                await Task.Delay(100, stopWriting.Token).ContinueWith(_ => { }, TaskScheduler.Default);
            }
        }, Token);
        try
        {
            try
            {
                var lagging = await TopologyWaiter.WaitForAsync(monitor, t => t.Backends[1].Eligibility == ReadEligibility.LagTime, "the paused replica to be ejected by time");
                Assert.True(lagging.Backends[1].LagTime >= TimeSpan.FromSeconds(1));
            }
            finally
            {
                await pair.Replica.ExecuteAsync("SELECT pg_wal_replay_resume()");
            }
            await TopologyWaiter.WaitForAsync(monitor, t => t.Backends[1].ServesReads, "the resumed replica to be readmitted while the primary stays busy");
        }
        finally
        {
            await stopWriting.CancelAsync();
            await writer;
        }
    }

    [Fact]
    public async Task Route_TokenFromInsertLsnAfterCommit_PrimaryUntilTheReplicaReplayedIt()
    {
        await using var backends = new DatabaseBackends("app", pair.Config(), PrimaryReplicaPair.Probe(), TimeProvider.System, NullLogger.Instance);
        backends.Start();
        await TopologyWaiter.WaitForAsync(backends.Monitor, t => t.ReadReplicas.Contains(1), "the replica to take reads");
        var read = StatementClassifier.Classify("SELECT * FROM filler"u8, SqlDialect.PostgreSql, backends.Rules);

        await pair.Replica.ExecuteAsync("SELECT pg_wal_replay_pause()");
        CausalToken token;
        try
        {
            // What the session will do: the client's write commits, then the edge asks the same server connection for an LSN.
            await using (var connection = new NpgsqlConnection(pair.Primary.ConnectionString(PostgresServer.AppUser, PostgresServer.AppDatabase)))
            {
                await connection.OpenAsync(Token);
                await new NpgsqlCommand("INSERT INTO filler (payload) VALUES ('mine')", connection).ExecuteNonQueryAsync(Token);
                var lsn = (string)(await new NpgsqlCommand("SELECT pg_current_wal_insert_lsn()::text", connection).ExecuteScalarAsync(Token))!;
                token = CausalToken.None.After(Lsn.Parse(lsn), TimeProvider.System.GetTimestamp());
            }
            var generation = backends.Topology.Generation;
            await TopologyWaiter.WaitForAsync(backends.Monitor, t => t.Generation > generation + 2, "two fresh rounds");

            var decision = backends.Route(read, false, token);
            Assert.Equal((RouteTarget.Primary, RouteReason.TokenNotReplayed), (decision.Target, decision.Reason));
            Assert.Equal(RouteTarget.Replica, backends.Route(read, false, CausalToken.None).Target);
        }
        finally
        {
            await pair.Replica.ExecuteAsync("SELECT pg_wal_replay_resume()");
        }

        await TopologyWaiter.WaitForAsync(backends.Monitor, t => t.Backends[1].Lsn >= token.Lsn, "the replica to replay the token");
        var after = backends.Route(read, false, token);
        Assert.Equal((RouteTarget.Replica, pair.ReplicaEndpoint), (after.Target, after.Backend!.Endpoint));
        var row = await pair.Replica.ScalarAsync("SELECT count(*) FROM filler WHERE payload = 'mine'", PostgresServer.AppDatabase);
        Assert.True((long)row! >= 1);
    }

    [Fact]
    public async Task Monitor_ReplicaStopped_BreakerEjectsItAndRestartReadmitsIt()
    {
        await using var monitor = Monitor(pair.Config());
        monitor.Start();
        await TopologyWaiter.WaitForAsync(monitor, t => t.ReadReplicas.Contains(1), "the replica to take reads");

        await pair.Replica.StopProcessAsync();
        try
        {
            var ejected = await TopologyWaiter.WaitForAsync(monitor, t => t.Backends[1].Breaker != BreakerState.Closed, "the stopped replica's breaker to open");
            Assert.Equal(ReadEligibility.BreakerOpen, ejected.Backends[1].Eligibility);
            Assert.Empty(ejected.ReadReplicas);
            Assert.Equal(0, ejected.PrimaryIndex); // the primary is unaffected
        }
        finally
        {
            await pair.Replica.StartProcessAsync();
        }

        var back = await TopologyWaiter.WaitForAsync(monitor, t => t.Backends[1].ServesReads, "the restarted replica to be readmitted");
        Assert.Equal(BreakerState.Closed, back.Backends[1].Breaker);
    }
}

/// <summary>Failover destroys its pair, so it has one of its own.</summary>
public sealed class BackendFailoverIntegrationTests : IAsyncLifetime
{
    private readonly PrimaryReplicaPair _pair = new();

    private static CancellationToken Token => TestContext.Current.CancellationToken;

    public ValueTask InitializeAsync() => _pair.InitializeAsync();

    public ValueTask DisposeAsync() => _pair.DisposeAsync();

    [Fact]
    public async Task Monitor_PrimaryStoppedAndReplicaPromoted_PromotedHostBecomesPrimary()
    {
        await using var monitor = new BackendMonitor("app", _pair.Config(TopologyMode.Discover), PrimaryReplicaPair.Probe(), TimeProvider.System, NullLogger.Instance);
        var changes = new List<PrimaryChange>();
        monitor.PrimaryChanged += change =>
        {
            lock (changes)
                changes.Add(change);
        };
        monitor.Start();
        var discovered = await TopologyWaiter.WaitForAsync(monitor, t => t.PrimaryIndex == 0 && t.ReadReplicas.Contains(1), "the primary to be discovered");
        Assert.Equal(BackendRole.Replica, discovered.Backends[1].Role);

        await _pair.Primary.StopProcessAsync();
        await TopologyWaiter.WaitForAsync(monitor, t => t.PrimaryIndex == -1, "the stopped primary to be dropped");
        var waiting = monitor.WaitForPrimaryAsync(Token).AsTask();
        Assert.False(waiting.IsCompleted);

        await _pair.Replica.PromoteAsync();

        var promoted = await waiting.WaitAsync(TimeSpan.FromSeconds(60), Token);
        Assert.Equal(_pair.ReplicaEndpoint, promoted.Endpoint);
        Assert.Equal(2u, promoted.Timeline);
        var topology = monitor.Current;
        Assert.Equal(1, topology.PrimaryIndex);
        Assert.Equal(BackendRole.Primary, topology.Backends[1].Role);
        Assert.NotEqual(BackendRole.Primary, topology.Backends[0].Role);
        lock (changes)
        {
            Assert.Equal([(0, -1), (-1, 1)], changes.Select(c => (c.Previous?.Index ?? -1, c.Current?.Index ?? -1)).Skip(1));
            Assert.Equal((-1, 0), (changes[0].Previous?.Index ?? -1, changes[0].Current?.Index ?? -1));
        }
    }
}
