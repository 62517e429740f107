using MProxy.Abstractions;
using MProxy.Edge.Configuration;
using MProxy.Edge.Qos;

namespace MProxy.Edge.Tests.Qos;

public sealed class QosConfigValidatorTests
{
    private const string Example = """
        tenantFrom: user
        defaultGroup: standard
        maxTenants: 5000
        hintPolicy: narrowing
        ruWeights:
          readPerByte: 0.000244140625
          writePer4KiB: 2
          latencyPerMs: 0.5
        ruWeightsByDatabase:
          analytics:
            latencyPerMs: 0.25
        codel:
          targetMs: 5
          intervalMs: 100
        groups:
          - name: oltp
            ruPerSecond: 2000
            burst: 4000
            debtMax: 1000
            priority: high
            weight: 2
            maxConcurrent: 32
            statementTimeoutMs: 5000
            maxBudgetWaitMs: 200
            serverSettings:
              work_mem: 4MB
              max_parallel_workers_per_gather: 0
            alternatives: [batch]
          - name: batch
            ruPerSecond: 300
            priority: low
            maxConcurrent: 4
            statementTimeoutMs: 600000
            serverSettings:
              work_mem: 256MB
          - name: standard
            ruPerSecond: 500
        tenants:
          - name: shop
            group: oltp
            match: [shop_rw, shop_ro]
          - name: reports
            group: batch
            allowedGroups: [standard]
        runaway:
          maxVerdicts: 1000
          fingerprintStatsSize: 200
          rules:
            - name: long-reports
              tenant: reports
              maxElapsedMs: 60000
              action: deprioritize
              priority: low
              watchMs: 600000
            - name: ru-hog
              maxRuPerExecution: 50000
              action: cancel
              shadow: true
            - name: hot-shape
              fingerprint: "0x00000000deadbeef"
              maxRuPerExecution: 100
              action: throttle
              maxConcurrent: 2
              ruPerSecond: 500
              scope: fingerprint
        """;

    [Fact]
    public void LoadYaml_FullExample_BuildsTheSnapshot()
    {
        var config = QosConfigValidator.LoadYaml(Example);

        Assert.True(config.Enabled);
        Assert.Equal("standard", config.DefaultGroup);
        Assert.Equal(5000, config.MaxTenants);
        Assert.Equal(0.25, config.WeightsFor("analytics").LatencyPerMs);
        Assert.Equal(2, config.WeightsFor("analytics").WritePer4KiB);
        Assert.Same(config.Weights, config.WeightsFor("orders"));
        var oltp = config.FindGroup("oltp")!;
        Assert.Equal(Priority.High, oltp.Priority);
        Assert.Equal(2000, oltp.RuPerSecond);
        Assert.Equal(4000, oltp.Burst);
        Assert.Equal(1000, oltp.DebtMax);
        Assert.Equal(32, oltp.MaxConcurrent);
        Assert.Equal(TimeSpan.FromSeconds(5), oltp.StatementTimeout);
        Assert.Equal(TimeSpan.FromMilliseconds(200), oltp.MaxBudgetWait);
        Assert.Equal([new("work_mem", "4MB"), new("max_parallel_workers_per_gather", "0")], oltp.ServerSettings);
        Assert.Equal(["batch"], oltp.Alternatives);
        var standard = config.FindGroup("standard")!;
        Assert.Equal(500, standard.Burst);
        Assert.Equal(int.MaxValue, standard.MaxConcurrent);
        Assert.Equal(["shop_rw", "shop_ro"], config.FindTenant("shop")!.Match);
        Assert.Equal(3, config.Runaway.Rules.Count);
        Assert.Equal(0xdeadbeefUL, config.Runaway.Rules[2].Fingerprint);
        Assert.Equal(RunawayAction.Throttle, config.Runaway.Rules[2].Action);
        Assert.True(config.Runaway.Rules[1].Shadow);
        Assert.Equal(TimeSpan.FromMinutes(10), config.Runaway.Rules[1].Watch);
        Assert.Equal(200, config.Runaway.FingerprintStatsSize);
    }

    [Fact]
    public void Validate_NoSection_QosIsOff()
    {
        Assert.False(QosConfigValidator.Validate(null).Enabled);
    }

    [Fact]
    public void LoadYaml_EmptySection_EnablesQosWithADefaultGroup()
    {
        var config = QosConfigValidator.LoadYaml("enabled: true");

        Assert.True(config.Enabled);
        Assert.NotNull(config.FindGroup(QosConfig.DefaultGroupName));
    }

    [Theory]
    [InlineData("tenantFrom: host", "qos.tenantFrom")]
    [InlineData("hintPolicy: widen", "qos.hintPolicy")]
    [InlineData("{ defaultGroup: gold, groups: [{ name: a }] }", "qos.defaultGroup")]
    [InlineData("groups: [{ name: a, priority: urgent }]", "qos.groups[0].priority")]
    [InlineData("groups: [{ name: a, ruPerSecond: -1 }]", "qos.groups[0].ruPerSecond")]
    [InlineData("groups: [{ name: a, weight: 0 }]", "qos.groups[0].weight")]
    [InlineData("groups: [{ name: 'a b' }]", "qos.groups[0].name")]
    [InlineData("groups: [{ name: default }, { name: default }]", "qos.groups[1].name")]
    [InlineData("groups: [{ name: default, alternatives: [nope] }]", "qos.groups[0].alternatives[0]")]
    [InlineData("groups: [{ name: default, alternatives: [default] }]", "qos.groups[0].alternatives[0]")]
    [InlineData("groups: [{ name: default, serverSettings: { 'work_mem; drop': 1 } }]", "qos.groups[0].serverSettings.work_mem; drop")]
    [InlineData("groups: [{ name: default, serverSettings: { work_mem: \"1'; drop table x; --\" } }]", "qos.groups[0].serverSettings.work_mem")]
    [InlineData("tenants: [{ name: t }]", "qos.tenants[0].group")]
    [InlineData("tenants: [{ name: t, group: gold }]", "qos.tenants[0].group")]
    [InlineData("tenants: [{ name: t, group: default, allowedGroups: [gold] }]", "qos.tenants[0].allowedGroups[0]")]
    [InlineData("tenants: [{ name: t, group: default }, { name: t, group: default }]", "qos.tenants[1].name")]
    [InlineData("tenants: [{ name: t, group: default, match: [x] }, { name: u, group: default, match: [x] }]", "qos.tenants[1].match[0]")]
    [InlineData("ruWeights: { latencyPerMs: -0.5 }", "qos.ruWeights.latencyPerMs")]
    [InlineData("ruWeightsByDatabase: { orders: { readBase: -1 } }", "qos.ruWeightsByDatabase.orders.readBase")]
    [InlineData("codel: { targetMs: 0 }", "qos.codel.targetMs")]
    [InlineData("codel: { targetMs: 50, intervalMs: 10 }", "qos.codel.intervalMs")]
    [InlineData("runaway: { rules: [{ name: r }] }", "qos.runaway.rules[0]")]
    [InlineData("runaway: { rules: [{ name: r, maxElapsedMs: 10, action: kill }] }", "qos.runaway.rules[0].action")]
    [InlineData("runaway: { rules: [{ name: r, maxElapsedMs: 10, action: throttle }] }", "qos.runaway.rules[0]")]
    [InlineData("runaway: { rules: [{ name: r, maxElapsedMs: 10, fingerprint: zz }] }", "qos.runaway.rules[0].fingerprint")]
    [InlineData("runaway: { rules: [{ name: r, maxElapsedMs: 10, scope: cluster }] }", "qos.runaway.rules[0].scope")]
    [InlineData("runaway: { rules: [{ name: r, maxElapsedMs: 10 }, { name: r, maxElapsedMs: 20 }] }", "qos.runaway.rules[1].name")]
    [InlineData("runaway: { maxVerdicts: 0 }", "qos.runaway.maxVerdicts")]
    public void LoadYaml_InvalidValue_ReportsTheKeyPath(string yaml, string key)
    {
        var e = Assert.Throws<ConfigException>(() => QosConfigValidator.LoadYaml(yaml));

        Assert.Equal(key, e.Key);
    }

    [Fact]
    public void LoadYaml_NoGroups_CreatesTheNamedDefaultGroup()
    {
        var config = QosConfigValidator.LoadYaml("defaultGroup: gold");

        Assert.Equal("gold", config.DefaultGroup);
        Assert.NotNull(config.FindGroup("gold"));
    }

    [Fact]
    public void LoadYaml_UnknownKey_IsAnError()
    {
        var e = Assert.Throws<ConfigException>(() => QosConfigValidator.LoadYaml("groups: [{ name: a, rps: 10 }]"));

        Assert.StartsWith("qos:", e.Key, StringComparison.Ordinal);
    }

    [Fact]
    public void LoadYaml_TooManyRules_IsAnError()
    {
        var rules = string.Join(", ", Enumerable.Range(0, 65).Select(i => $"{{ name: r{i}, maxElapsedMs: 10 }}"));

        var e = Assert.Throws<ConfigException>(() => QosConfigValidator.LoadYaml($"runaway: {{ rules: [{rules}] }}"));

        Assert.Equal("qos.runaway.rules", e.Key);
    }
}
