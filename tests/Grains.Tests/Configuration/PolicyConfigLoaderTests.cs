using MProxy.Abstractions.Policy;
using MProxy.Grains.Configuration;

namespace MProxy.Grains.Tests.Configuration;

public sealed class PolicyConfigLoaderTests
{
    [Fact]
    public void Load_FullYaml_BuildsConfig()
    {
        var config = PolicyConfigLoader.Load("""
            version: 7
            leasePeriodMs: 8000
            exchangeIntervalMs: 500
            defaultTenant: { ruPerSecond: 100 }
            tenants:
              - name: acme
                ruPerSecond: 5000
                burstRu: 10000
            backends:
              - name: app
                maxConnections: 90
            runaway:
              minExecutions: 3
              reject: { latencyMs: 30000 }
            """);

        Assert.Equal(7, config.Version);
        Assert.Equal(TimeSpan.FromSeconds(8), config.LeasePeriod);
        Assert.Equal(new TenantPolicy(new TenantId("acme"), 5000, 10000), config.FindTenant(new TenantId("acme")));
        Assert.Equal(100, config.FindTenant(new TenantId("other"))!.BurstRu);
        Assert.Equal(90, config.FindBackend(new BackendId("app"))!.MaxConnections);
        Assert.Equal(30000, config.Runaway.Reject!.LatencyMs);
    }

    [Fact]
    public void Load_Json_IsAcceptedAndVersionDerivedFromContent()
    {
        const string json = """{ "tenants": [ { "name": "acme", "ruPerSecond": 10 } ] }""";

        var first = PolicyConfigLoader.Load(json);
        var second = PolicyConfigLoader.Load(json);
        var changed = PolicyConfigLoader.Load(json.Replace("10", "11", StringComparison.Ordinal));

        Assert.True(first.Version > 0);
        Assert.Equal(first.Version, second.Version);
        Assert.NotEqual(first.Version, changed.Version);
    }

    [Theory]
    [InlineData("tenants: [{ name: a }]", "tenants[0].ruPerSecond")]
    [InlineData("tenants: [{ name: a, ruPerSecond: 1 }, { name: a, ruPerSecond: 2 }]", "tenants[1].name")]
    [InlineData("backends: [{ name: app, maxConnections: 0 }]", "backends[0].maxConnections")]
    [InlineData("leasePeriodMs: 500\nexchangeIntervalMs: 1000", "leasePeriodMs")]
    [InlineData("runaway: { reject: {} }", "runaway.reject")]
    public void Load_InvalidPolicy_NamesTheKey(string yaml, string key)
    {
        var e = Assert.Throws<PolicyConfigException>(() => PolicyConfigLoader.Load(yaml));

        Assert.Equal(key, e.Key);
    }

    [Fact]
    public void Load_UnknownKey_IsReportedWithPosition()
    {
        var e = Assert.Throws<PolicyConfigException>(() => PolicyConfigLoader.Load("tenantz: []"));

        Assert.StartsWith("policy:1:", e.Key, StringComparison.Ordinal);
    }
}

public sealed class ExamplePolicyFileTests
{
    [Fact]
    public void LoadFile_DeployExample_IsValid()
    {
        var directory = new DirectoryInfo(AppContext.BaseDirectory);
        while (directory is not null && !File.Exists(Path.Combine(directory.FullName, "MProxy.sln")))
            directory = directory.Parent;
        Assert.NotNull(directory);

        var config = PolicyConfigLoader.LoadFile(Path.Combine(directory.FullName, "deploy", "silo-policy.yaml"));

        Assert.Equal(2, config.Tenants.Count);
        Assert.NotNull(config.DefaultTenant);
        Assert.Equal(90, config.FindBackend(new BackendId("app"))!.MaxConnections);
        Assert.NotNull(config.Runaway.Reject);
    }
}
