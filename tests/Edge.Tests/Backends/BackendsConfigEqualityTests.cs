using MProxy.Edge.Backends;
using MProxy.Edge.Configuration;
using MProxy.Edge.Routing;

namespace MProxy.Edge.Tests.Backends;

/// <summary>A reload compares backends sections by value: equal ones keep the database's pools and monitor.</summary>
public sealed class BackendsConfigEqualityTests
{
    private static BackendsConfig Config(string[] hosts, string[]? writeFunctions = null) => new()
    {
        Hosts = [.. hosts.Select(h => new HostPort(h, 5432))],
        Monitor = new MonitorCredentials("monitor", "pw", "postgres"),
        Rules = writeFunctions is null ? RoutingRules.Default : new RoutingRules { WriteFunctions = [.. writeFunctions] },
    };

    [Fact]
    public void SameValues_InNewLists_AreEqual()
    {
        var a = Config(["db1", "db2"], ["nextval"]);
        var b = Config(["db1", "db2"], ["nextval"]);

        Assert.NotSame(a.Hosts, b.Hosts);
        Assert.Equal(a, b);
        Assert.True(a == b);
        Assert.Equal(a.GetHashCode(), b.GetHashCode());
    }

    [Theory]
    [InlineData(new[] { "db1", "db3" }, null)]
    [InlineData(new[] { "db2", "db1" }, null)]
    [InlineData(new[] { "db1" }, null)]
    [InlineData(new[] { "db1", "db2" }, "billing.allocate_id")]
    public void DifferentHostsOrRules_AreNotEqual(string[] hosts, string? writeFunction)
    {
        var a = Config(["db1", "db2"]);
        var b = Config(hosts, writeFunction is null ? null : [writeFunction]);

        Assert.NotEqual(a, b);
        Assert.True(a != b);
    }

    [Fact]
    public void OtherSettings_Count()
    {
        var a = Config(["db1", "db2"]);

        Assert.NotEqual(a, a with { MaxReplicaLag = TimeSpan.FromSeconds(5) });
        Assert.NotEqual(a, a with { Monitor = new MonitorCredentials("other", "pw", "postgres") });
        Assert.Equal(a, a with { });
    }
}
