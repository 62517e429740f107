using System.Text;
using Microsoft.Extensions.Logging.Abstractions;
using MProxy.Edge.Backends;
using MProxy.Edge.Configuration;
using MProxy.Edge.Routing;
using MProxy.TestSupport;

namespace MProxy.Edge.Tests.Backends;

public sealed class DatabaseBackendsTests
{
    private static readonly HostPort Primary = new("10.0.0.1", 5432);
    private static readonly HostPort Replica = new("10.0.0.2", 5432);

    private static StatementInfo Classify(string sql) =>
        StatementClassifier.Classify(Encoding.UTF8.GetBytes(sql), SqlDialect.PostgreSql, RoutingRules.Default);

    [Fact]
    public async Task Route_AfterOneRound_ReadsToReplicaWritesToPrimaryTokenRespected()
    {
        var time = new ManualTimeProvider();
        var probe = new FakeBackendProbe();
        probe.Primary(Primary, new Lsn(2000));
        probe.Replica(Replica, new Lsn(1500));
        var config = new BackendsConfig { Hosts = [Primary, Replica], Monitor = new MonitorCredentials("m", null, "postgres"), MaxReplicaLagBytes = 1000 };
        await using var backends = new DatabaseBackends("app", config, probe, time, NullLogger.Instance);

        Assert.Equal(RouteTarget.Primary, backends.Route(Classify("SELECT 1"), false, CausalToken.None).Target); // replica not probed yet
        await backends.Monitor.ProbeOnceAsync(TestContext.Current.CancellationToken);

        Assert.Equal((RouteTarget.Replica, Replica), Target(backends.Route(Classify("SELECT 1"), false, CausalToken.None)));
        Assert.Equal((RouteTarget.Primary, Primary), Target(backends.Route(Classify("DELETE FROM t"), false, CausalToken.None)));
        Assert.Equal((RouteTarget.Primary, Primary), Target(backends.Route(Classify("SELECT 1"), false, new CausalToken(new Lsn(1501), 1))));
        Assert.Equal((RouteTarget.Replica, Replica), Target(backends.Route(Classify("SELECT 1"), false, new CausalToken(new Lsn(1500), 1))));

        static (RouteTarget, HostPort?) Target(RouteDecision d) => (d.Target, d.Backend?.Endpoint);
    }

    [Fact]
    public void Constructor_NoMonitorCredentials_Throws()
    {
        var config = new BackendsConfig { Hosts = [Primary], Monitor = null };
        Assert.Throws<ArgumentException>(() => new DatabaseBackends("app", config, new FakeBackendProbe(), new ManualTimeProvider(), NullLogger.Instance));
    }
}
