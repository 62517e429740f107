using System.Text;
using MProxy.Edge.Backends;
using MProxy.Edge.Routing;
using MProxy.TestSupport;

namespace MProxy.Edge.Tests.Backends;

public sealed class RouteDeciderTests
{
    private static readonly BackendsConfig BaseConfig = new()
    {
        Hosts = [TopologyBuilder.Host(0), TopologyBuilder.Host(1), TopologyBuilder.Host(2)],
        Monitor = new MonitorCredentials("monitor", null, "postgres"),
    };

    // Primary 0; replica 1 replayed up to 1000, replica 2 up to 2000.
    private static readonly BackendTopology Topology = TopologyBuilder.Build([1000, 2000]);

    private static StatementInfo Classify(string sql) =>
        StatementClassifier.Classify(Encoding.UTF8.GetBytes(sql), SqlDialect.PostgreSql, RoutingRules.Default);

    private static RouteDecider Decider(BackendsConfig? config = null, TimeProvider? time = null)
    {
        time ??= new ManualTimeProvider();
        config ??= BaseConfig;
        return new RouteDecider(config, new ReplicaBalancer(config.Hosts.Count, config.LatencyDecay, time, new Random(1)), time);
    }

    public static TheoryData<string, bool, RouteTarget, RouteReason> Table => new()
    {
        { "SELECT * FROM t", false, RouteTarget.Replica, RouteReason.Read },
        { "select 1; VALUES (2); SHOW work_mem", false, RouteTarget.Replica, RouteReason.Read },
        { "EXPLAIN SELECT * FROM t", false, RouteTarget.Replica, RouteReason.Read },
        { "INSERT INTO t VALUES (1)", false, RouteTarget.Primary, RouteReason.Write },
        { "SELECT 1; UPDATE t SET a = 1", false, RouteTarget.Primary, RouteReason.Write },
        { "SELECT * FROM t FOR UPDATE", false, RouteTarget.Primary, RouteReason.Write },
        { "SELECT * FROM t WHERE id IN (SELECT id FROM u FOR KEY SHARE)", false, RouteTarget.Primary, RouteReason.Write },
        { "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", false, RouteTarget.Primary, RouteReason.Write },
        { "SELECT nextval('s')", false, RouteTarget.Primary, RouteReason.Write },
        { "SELECT pg_catalog.pg_advisory_lock(1)", false, RouteTarget.Primary, RouteReason.Write },
        { "BEGIN", false, RouteTarget.Primary, RouteReason.Write },
        { "BEGIN READ WRITE", false, RouteTarget.Primary, RouteReason.Write },
        { "BEGIN READ ONLY", false, RouteTarget.Replica, RouteReason.Read },
        { "START TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY", false, RouteTarget.Replica, RouteReason.Read },
        { "BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY", false, RouteTarget.Primary, RouteReason.Serializable },
        { "SET search_path = app", false, RouteTarget.Primary, RouteReason.Write },
        { "PREPARE q AS SELECT 1", false, RouteTarget.Primary, RouteReason.Write },
        { "/* mproxy: route=primary */ SELECT * FROM t", false, RouteTarget.Primary, RouteReason.HintPrimary },
        { "SELECT * FROM t -- mproxy: route=primary", false, RouteTarget.Primary, RouteReason.HintPrimary },
        { "/* mproxy: route=replica */ INSERT INTO t VALUES (1)", false, RouteTarget.Primary, RouteReason.Write },
        { "/* mproxy: route=replica */ SELECT * FROM t", false, RouteTarget.Replica, RouteReason.Read },
        { "SELECT '/* mproxy: route=primary */'", false, RouteTarget.Replica, RouteReason.Read },
        { "SELECT * FROM t", true, RouteTarget.Primary, RouteReason.SessionState },
        { "BEGIN READ ONLY", true, RouteTarget.Primary, RouteReason.SessionState },
    };

    [Theory]
    [MemberData(nameof(Table))]
    public void Decide_Statement_GoesWhereTheRulesSay(string sql, bool sessionHasState, RouteTarget target, RouteReason reason)
    {
        var decision = Decider().Decide(Classify(sql), sessionHasState, CausalToken.None, Topology);

        Assert.Equal((target, reason), (decision.Target, decision.Reason));
        if (target == RouteTarget.Primary)
            Assert.Equal(0, decision.BackendIndex);
        else
            Assert.Contains(decision.BackendIndex, new[] { 1, 2 });
        Assert.Same(decision.Backend, decision.BackendIndex >= 0 ? Topology.Backends[decision.BackendIndex] : null);
    }

    [Fact]
    public void Decide_TokenReplayedByOneReplica_AlwaysThatReplica()
    {
        var decider = Decider();
        var token = new CausalToken(new Lsn(1500), 1);
        for (var i = 0; i < 50; i++)
        {
            var decision = decider.Decide(Classify("SELECT 1"), false, token, Topology);
            Assert.Equal((RouteTarget.Replica, 2), (decision.Target, decision.BackendIndex));
        }
    }

    [Fact]
    public void Decide_TokenReplayedByNoReplica_Primary()
    {
        var decision = Decider().Decide(Classify("SELECT 1"), false, new CausalToken(new Lsn(2001), 1), Topology);
        Assert.Equal((RouteTarget.Primary, RouteReason.TokenNotReplayed, 0), (decision.Target, decision.Reason, decision.BackendIndex));
    }

    [Fact]
    public void Decide_TokenNotReplayedAndPrimaryMayNotRead_StillPrimary()
    {
        var decision = Decider(BaseConfig with { PrimaryServesReads = false }).Decide(Classify("SELECT 1"), false, new CausalToken(new Lsn(5000), 1), Topology);
        Assert.Equal((RouteTarget.Primary, RouteReason.TokenNotReplayed), (decision.Target, decision.Reason));
    }

    [Fact]
    public void Decide_ReadYourWritesOff_TokenIgnored()
    {
        var decision = Decider(BaseConfig with { ReadYourWrites = false }).Decide(Classify("SELECT 1"), false, new CausalToken(new Lsn(5000), 1), Topology);
        Assert.Equal(RouteTarget.Replica, decision.Target);
    }

    [Fact]
    public void Decide_ReplicaHint_WaivesTokenButNotEligibility()
    {
        var decider = Decider();
        var token = new CausalToken(new Lsn(5000), 1);
        Assert.Equal(RouteTarget.Replica, decider.Decide(Classify("/* mproxy: route=replica */ SELECT 1"), false, token, Topology).Target);

        var noReplica = TopologyBuilder.Build([1000, 2000], ineligible: [1, 2]);
        var decision = decider.Decide(Classify("/* mproxy: route=replica */ SELECT 1"), false, token, noReplica);
        Assert.Equal((RouteTarget.Primary, RouteReason.NoReplica), (decision.Target, decision.Reason));
    }

    [Fact]
    public void Decide_WithinStickinessWindow_PrimaryThenReplicaAfterIt()
    {
        var time = new ManualTimeProvider();
        var decider = Decider(BaseConfig with { StickinessWindow = TimeSpan.FromMilliseconds(500), ReadYourWrites = false }, time);
        var token = new CausalToken(new Lsn(1), time.GetTimestamp());

        Assert.Equal((RouteTarget.Primary, RouteReason.Sticky), Decide());
        time.Advance(TimeSpan.FromMilliseconds(499));
        Assert.Equal((RouteTarget.Primary, RouteReason.Sticky), Decide());
        time.Advance(TimeSpan.FromMilliseconds(1));
        Assert.Equal((RouteTarget.Replica, RouteReason.Read), Decide());

        (RouteTarget, RouteReason) Decide()
        {
            var d = decider.Decide(Classify("SELECT 1"), false, token, Topology);
            return (d.Target, d.Reason);
        }
    }

    [Fact]
    public void Decide_NoEligibleReplica_PrimaryOrUnavailableByConfig()
    {
        var topology = TopologyBuilder.Build([1000, 2000], ineligible: [1, 2]);
        var allowed = Decider().Decide(Classify("SELECT 1"), false, CausalToken.None, topology);
        Assert.Equal((RouteTarget.Primary, RouteReason.NoReplica, 0), (allowed.Target, allowed.Reason, allowed.BackendIndex));

        var refused = Decider(BaseConfig with { PrimaryServesReads = false }).Decide(Classify("SELECT 1"), false, CausalToken.None, topology);
        Assert.Equal((RouteTarget.Unavailable, RouteReason.NoReplica, -1), (refused.Target, refused.Reason, refused.BackendIndex));
    }

    [Fact]
    public void Decide_NoUsablePrimary_WritesWaitReadsStillUseReplicas()
    {
        var topology = TopologyBuilder.Build([1000, 2000], primaryUsable: false);
        var decider = Decider();
        var write = decider.Decide(Classify("UPDATE t SET a = 1"), false, CausalToken.None, topology);
        Assert.Equal((RouteTarget.WaitForPrimary, RouteReason.Write, -1), (write.Target, write.Reason, write.BackendIndex));
        Assert.Equal(RouteTarget.Replica, decider.Decide(Classify("SELECT 1"), false, CausalToken.None, topology).Target);

        var noReplicas = TopologyBuilder.Build([1000, 2000], primaryUsable: false, ineligible: [1, 2]);
        Assert.Equal(RouteTarget.WaitForPrimary, decider.Decide(Classify("SELECT 1"), false, CausalToken.None, noReplicas).Target);
    }

    [Fact]
    public void Decide_SteadyState_DoesNotAllocate()
    {
        var time = new ManualTimeProvider();
        var decider = Decider(BaseConfig with { StickinessWindow = TimeSpan.FromMilliseconds(1) }, time);
        var read = Classify("SELECT * FROM t WHERE id = 1");
        var write = Classify("UPDATE t SET a = 1");
        var token = new CausalToken(new Lsn(1500), time.GetTimestamp() - 1_000_000);
        decider.Decide(read, false, token, Topology);

        var before = GC.GetAllocatedBytesForCurrentThread();
        var replicas = 0;
        for (var i = 0; i < 100; i++)
        {
            replicas += decider.Decide(read, false, token, Topology).Target == RouteTarget.Replica ? 1 : 0;
            replicas += decider.Decide(write, false, token, Topology).Target == RouteTarget.Replica ? 1 : 0;
        }
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
        Assert.Equal(100, replicas);
    }
}
