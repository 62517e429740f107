using System.Net;
using MProxy.Edge.Configuration;

namespace MProxy.Edge.Tests.Protocols.MySql;

/// <summary>The configuration keys of the MySQL adapter: databases[].protocol, allowLoadDataLocal, listen.mysql.</summary>
public sealed class MySqlConfigTests
{
    private const string Users = "users:\n  - name: app\n    password: pw\n";

    [Fact]
    public void Protocol_MySql_DefaultsPort3306_AndOpensTheDefaultListener()
    {
        var config = ConfigLoader.LoadYaml(Users + "databases:\n  - name: shop\n    protocol: mysql\n    primary: db.internal\n");
        var database = Assert.Single(config.Databases);
        Assert.Equal(DatabaseProtocol.MySql, database.Protocol);
        Assert.Equal(new HostPort("db.internal", 3306), database.Primary);
        Assert.False(database.AllowLoadDataLocal);
        Assert.Equal(new IPEndPoint(IPAddress.Loopback, 6033), config.Listen.MySql);
    }

    [Fact]
    public void Protocol_Omitted_IsPostgres_WithoutAMySqlListener()
    {
        var config = ConfigLoader.LoadYaml(Users + "databases:\n  - name: app\n    primary: db.internal\n");
        Assert.Equal(DatabaseProtocol.Postgres, config.Databases[0].Protocol);
        Assert.Equal(5432, config.Databases[0].Primary.Port);
        Assert.Null(config.Listen.MySql);
    }

    [Fact]
    public void ListenMySql_Explicit_OrOff()
    {
        var yaml = Users + "databases:\n  - name: shop\n    protocol: mariadb\n    primary: db:3307\n    allowLoadDataLocal: true\n";
        var config = ConfigLoader.LoadYaml("listen:\n  mysql: 0.0.0.0:3306\n" + yaml);
        Assert.Equal(new IPEndPoint(IPAddress.Any, 3306), config.Listen.MySql);
        Assert.True(config.Databases[0].AllowLoadDataLocal);
        Assert.Null(ConfigLoader.LoadYaml("listen:\n  mysql: off\n" + yaml).Listen.MySql);
    }

    [Fact]
    public void Protocol_Unknown_IsReportedWithItsKey()
    {
        var e = Assert.Throws<ConfigException>(() => ConfigLoader.LoadYaml(Users + "databases:\n  - name: x\n    protocol: oracle\n    primary: db\n"));
        Assert.Contains("databases[0].protocol", e.Message);
    }

    [Fact]
    public void AllowLoadDataLocal_OnAPostgresDatabase_IsRefused()
    {
        var e = Assert.Throws<ConfigException>(() => ConfigLoader.LoadYaml(Users + "databases:\n  - name: x\n    primary: db\n    allowLoadDataLocal: true\n"));
        Assert.Contains("databases[0].allowLoadDataLocal", e.Message);
    }

    [Fact]
    public void Backends_OnAMySqlDatabase_DefaultPort3306_AndTheServerUserMonitors()
    {
        var config = ConfigLoader.LoadYaml(Users + "databases:\n  - name: shop\n    protocol: mysql\n    serverUser: app_rw\n    serverPassword: s3\n"
            + "    backends:\n      primary: db1\n      replicas: [db2, db3:3307]\n");
        var database = Assert.Single(config.Databases);
        var backends = Assert.IsType<MProxy.Edge.Backends.BackendsConfig>(database.Backends);
        Assert.Equal([new HostPort("db1", 3306), new HostPort("db2", 3306), new HostPort("db3", 3307)], backends.Hosts);
        Assert.Equal(new HostPort("db1", 3306), database.Primary);
        Assert.Equal(new MProxy.Edge.Backends.MonitorCredentials("app_rw", "s3", "shop"), backends.Monitor);
        Assert.True(backends.ReadYourWrites);
    }

    [Fact]
    public void Backends_OnAMySqlDatabase_MonitorWithoutDatabase_LogsInToNone()
    {
        var config = ConfigLoader.LoadYaml(Users + "databases:\n  - name: shop\n    protocol: mariadb\n"
            + "    backends:\n      hosts: [a, b]\n      monitor: { user: mon, password: m }\n");
        var backends = config.Databases[0].Backends!;
        Assert.Equal(MProxy.Edge.Backends.TopologyMode.Discover, backends.Mode);
        Assert.Equal(new MProxy.Edge.Backends.MonitorCredentials("mon", "m", ""), backends.Monitor);
        Assert.All(backends.Hosts, h => Assert.Equal(3306, h.Port));
    }

    [Fact]
    public void Backends_OnAMySqlDatabase_Invalid_NamesTheOffendingKey()
    {
        var e = Assert.Throws<ConfigException>(() => ConfigLoader.LoadYaml(Users + "databases:\n  - name: x\n    protocol: mysql\n    backends:\n      hosts: [a:3306, b:3306]\n"));
        Assert.Contains("databases[0].backends.monitor.user", e.Message);
        e = Assert.Throws<ConfigException>(() => ConfigLoader.LoadYaml(Users + "databases:\n  - name: x\n    protocol: mysql\n    serverUser: u\n    backends:\n      primary: a\n      replicas: [a:3306]\n"));
        Assert.Contains("databases[0].backends.replicas[0]", e.Message);
        Assert.Contains("listed twice", e.Message);
    }
}
