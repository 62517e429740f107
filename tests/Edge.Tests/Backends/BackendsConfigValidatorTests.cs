using MProxy.Edge.Backends;
using MProxy.Edge.Configuration;
using MProxy.Edge.Routing;

namespace MProxy.Edge.Tests.Backends;

public sealed class BackendsConfigValidatorTests
{
    private const string Key = "databases[0].backends";

    private static readonly BackendsDefaults Defaults = new(
        Primary: null,
        Monitor: new MonitorCredentials("app", "app-pw", "app"),
        DatabaseName: "app");

    private static BackendsConfig Parse(string yaml, BackendsDefaults? defaults = null) =>
        BackendsConfigValidator.ParseYaml(yaml, Key, defaults ?? Defaults);

    private static ConfigException Error(string yaml, BackendsDefaults? defaults = null) =>
        Assert.Throws<ConfigException>(() => Parse(yaml, defaults));

    [Fact]
    public void Parse_PrimaryAndReplicas_StaticModeWithDefaults()
    {
        var config = Parse("""
            primary: 10.0.0.1:5432
            replicas: [10.0.0.2:5433, "replica-3"]
            """);

        Assert.Equal(TopologyMode.Static, config.Mode);
        Assert.Equal([new HostPort("10.0.0.1", 5432), new HostPort("10.0.0.2", 5433), new HostPort("replica-3", 5432)], config.Hosts);
        Assert.Equal(2, config.ReplicaCount);
        Assert.Equal(new MonitorCredentials("app", "app-pw", "app"), config.Monitor);
        Assert.Equal(TimeSpan.FromSeconds(1), config.HealthCheckInterval);
        Assert.Equal(TimeSpan.FromSeconds(1), config.HealthCheckTimeout);
        Assert.Equal(new BreakerSettings(), config.Breaker);
        Assert.Null(config.MaxReplicaLagBytes);
        Assert.Equal(TimeSpan.FromSeconds(1), config.MaxReplicaLag);
        Assert.True(config.PrimaryServesReads);
        Assert.True(config.ReadYourWrites);
        Assert.Equal(TimeSpan.Zero, config.StickinessWindow);
        Assert.Same(RoutingRules.Default, config.Rules);
        Assert.Equal(TimeSpan.FromSeconds(10), config.FailoverWait);
    }

    [Fact]
    public void Parse_Hosts_DiscoverMode()
    {
        var config = Parse("hosts: [db1:5432, db2:5432, '[::1]:6000']");
        Assert.Equal(TopologyMode.Discover, config.Mode);
        Assert.Equal([new HostPort("db1", 5432), new HostPort("db2", 5432), new HostPort("::1", 6000)], config.Hosts);
    }

    [Fact]
    public void Validate_SectionAbsent_DatabasePrimaryOnlyReadYourWritesOff()
    {
        var config = BackendsConfigValidator.Validate(Key, null, Defaults with { Primary = new HostPort("10.0.0.9", 5432) });
        Assert.Equal([new HostPort("10.0.0.9", 5432)], config.Hosts);
        Assert.Equal(0, config.ReplicaCount);
        Assert.False(config.ReadYourWrites);
    }

    [Fact]
    public void Parse_ReplicasUnderDatabasePrimary_UsesIt()
    {
        var config = Parse("replicas: [10.0.0.2]", Defaults with { Primary = new HostPort("10.0.0.1", 5432) });
        Assert.Equal([new HostPort("10.0.0.1", 5432), new HostPort("10.0.0.2", 5432)], config.Hosts);
    }

    [Fact]
    public void Parse_EverythingSet_AllValuesTaken()
    {
        var config = Parse("""
            primary: p:5432
            replicas: [r1:5432]
            monitor: { user: watcher, password: pw, database: postgres }
            healthCheck: { intervalMs: 2000, timeoutMs: 700 }
            breaker: { failuresToOpen: 5, cooldownMs: 500, cooldownMaxMs: 60000, jitter: 0.5 }
            maxReplicaLagBytes: 1048576
            maxReplicaLagMs: 0
            primaryServesReads: false
            readYourWrites: false
            stickinessMs: 250
            extraWriteFunctions: [billing.allocate_id]
            failoverWaitMs: 3000
            latencyDecayMs: 2000
            seed: 77
            """);

        Assert.Equal(new MonitorCredentials("watcher", "pw", "postgres"), config.Monitor);
        Assert.Equal((TimeSpan.FromSeconds(2), TimeSpan.FromMilliseconds(700)), (config.HealthCheckInterval, config.HealthCheckTimeout));
        Assert.Equal(new BreakerSettings { FailuresToOpen = 5, CooldownBase = TimeSpan.FromMilliseconds(500), CooldownMax = TimeSpan.FromMinutes(1), Jitter = 0.5 }, config.Breaker);
        Assert.Equal(1048576, config.MaxReplicaLagBytes);
        Assert.Null(config.MaxReplicaLag);
        Assert.False(config.PrimaryServesReads);
        Assert.False(config.ReadYourWrites);
        Assert.Equal(TimeSpan.FromMilliseconds(250), config.StickinessWindow);
        Assert.Contains("nextval", config.Rules.WriteFunctions);
        Assert.Contains("billing.allocate_id", config.Rules.WriteFunctions);
        Assert.Equal(TimeSpan.FromSeconds(3), config.FailoverWait);
        Assert.Equal(TimeSpan.FromSeconds(2), config.LatencyDecay);
        Assert.Equal(77, config.Seed);
    }

    [Fact]
    public void Parse_WriteFunctions_ReplaceTheDefaults()
    {
        var config = Parse("{ primary: p, writeFunctions: [my_write] }");
        Assert.Equal(["my_write"], config.Rules.WriteFunctions);
    }

    [Fact]
    public void Parse_MonitorUserWithoutPassword_DoesNotBorrowTheDefaultPassword()
    {
        var config = Parse("{ primary: p, monitor: { user: watcher } }");
        Assert.Equal(new MonitorCredentials("watcher", null, "app"), config.Monitor);
    }

    [Theory]
    [InlineData("{ hosts: [a, b], primary: a }", ".hosts", "not both")]
    [InlineData("{ hosts: [] }", ".hosts", "empty")]
    [InlineData("{ hosts: [a, 'a:5432'] }", ".hosts[1]", "listed twice")]
    [InlineData("{ replicas: [a] }", ".primary", "required")]
    [InlineData("{ primary: a, replicas: [b, a] }", ".replicas[1]", "listed twice")]
    [InlineData("{ primary: 'a:x' }", ".primary", "not a port")]
    [InlineData("{ primary: a, replicas: [''] }", ".replicas[0]", "empty")]
    [InlineData("{ primary: a, healthCheck: { intervalMs: 10 } }", ".healthCheck.intervalMs", "outside")]
    [InlineData("{ primary: a, healthCheck: { timeoutMs: 0 } }", ".healthCheck.timeoutMs", "outside")]
    [InlineData("{ primary: a, breaker: { failuresToOpen: 0 } }", ".breaker.failuresToOpen", "outside")]
    [InlineData("{ primary: a, breaker: { cooldownMs: 5000, cooldownMaxMs: 1000 } }", ".breaker.cooldownMaxMs", "below")]
    [InlineData("{ primary: a, breaker: { jitter: 1 } }", ".breaker.jitter", "outside")]
    [InlineData("{ primary: a, maxReplicaLagBytes: -1 }", ".maxReplicaLagBytes", "negative")]
    [InlineData("{ primary: a, maxReplicaLagMs: -1 }", ".maxReplicaLagMs", "negative")]
    [InlineData("{ primary: a, stickinessMs: -5 }", ".stickinessMs", "outside")]
    [InlineData("{ primary: a, failoverWaitMs: 600000 }", ".failoverWaitMs", "outside")]
    [InlineData("{ primary: a, writeFunctions: [ok, 'not ok'] }", ".writeFunctions[1]", "not a function name")]
    [InlineData("{ primary: a, extraWriteFunctions: ['a.b.c'] }", ".extraWriteFunctions[0]", "not a function name")]
    public void Parse_Invalid_ReportsTheKeyPath(string yaml, string keySuffix, string message)
    {
        var error = Error(yaml);
        Assert.Equal(Key + keySuffix, error.Key);
        Assert.Contains(message, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Parse_ReplicasButNoMonitorUserAnywhere_ReportsMonitorUser()
    {
        var error = Error("{ primary: a, replicas: [b] }", Defaults with { Monitor = null });
        Assert.Equal(Key + ".monitor.user", error.Key);
        Assert.Equal(Key + ".monitor.user", Error("hosts: [a, b]", Defaults with { Monitor = null }).Key);
        Assert.Null(Parse("hosts: [a]", Defaults with { Monitor = null }).Monitor);
    }

    [Fact]
    public void Validate_SingleHostNoMonitorUser_NoHealthChecks()
    {
        var config = BackendsConfigValidator.Validate(Key, null, Defaults with { Primary = new HostPort("a", 5432), Monitor = null });
        Assert.Null(config.Monitor);
        Assert.Equal([new HostPort("a", 5432)], config.Hosts);
    }

    [Fact]
    public void Parse_MonitorSectionWithoutUser_Reported()
    {
        var error = Error("{ primary: a, monitor: { password: x } }", Defaults with { Monitor = null });
        Assert.Equal(Key + ".monitor.user", error.Key);
    }

    [Fact]
    public void Parse_PrimaryDiffersFromDatabasePrimary_Reported()
    {
        var error = Error("{ primary: 'b:5432' }", Defaults with { Primary = new HostPort("a", 5432) });
        Assert.Equal(Key + ".primary", error.Key);
    }

    [Fact]
    public void Parse_UnknownKey_Reported()
    {
        var error = Error("{ primary: a, replica: [b] }");
        Assert.StartsWith(Key + ":", error.Key, StringComparison.Ordinal);
    }

    [Fact]
    public void MonitorCredentials_ToString_HidesThePassword() =>
        Assert.DoesNotContain("app-pw", Defaults.Monitor!.ToString(), StringComparison.Ordinal);
}
