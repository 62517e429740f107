using MProxy.Edge.Configuration;

namespace MProxy.Edge.Tests.Configuration;

public sealed class ConfigLoaderTests
{
    private const string Minimal = """
        users:
          - name: app
            password: pw
        databases:
          - name: app
            primary: 10.0.0.1:5433
        """;

    [Fact]
    public void Load_Minimal_AppliesDefaults()
    {
        var config = ConfigLoader.LoadYaml(Minimal);
        Assert.Equal(6432, config.Listen.Postgres!.Port);
        Assert.Null(config.Listen.Admin);
        Assert.Equal(AuthMethod.ScramSha256, config.Auth.Method);
        var database = Assert.Single(config.Databases);
        Assert.Equal(new HostPort("10.0.0.1", 5433), database.Primary);
        Assert.Equal("app", database.ServerDatabase);
        Assert.Equal(PoolMode.Transaction, database.Pool.Mode);
        Assert.Equal(20, database.Pool.Size);
        Assert.Equal("DISCARD ALL", database.Pool.ResetQuery);
    }

    [Fact]
    public void Load_DatabasePoolOverridesDefaults()
    {
        var config = ConfigLoader.LoadYaml("""
            pool:
              size: 10
              mode: session
            users: [ { name: app, password: pw } ]
            databases:
              - name: a
                primary: h:1
              - name: b
                primary: h:2
                pool: { size: 3, waitTimeoutMs: 250 }
            """);
        Assert.Equal(10, config.FindDatabase("a")!.Pool.Size);
        Assert.Equal(PoolMode.Session, config.FindDatabase("b")!.Pool.Mode);
        Assert.Equal(3, config.FindDatabase("b")!.Pool.Size);
        Assert.Equal(TimeSpan.FromMilliseconds(250), config.FindDatabase("b")!.Pool.WaitTimeout);
    }

    [Theory]
    [InlineData("pool:\n  mode: statement\n", "pool.mode")]
    [InlineData("pool:\n  size: 0\n", "pool.size")]
    [InlineData("auth:\n  method: ldap\n", "auth.method")]
    [InlineData("listen:\n  postgres: nowhere\n", "listen.postgres")]
    [InlineData("listen:\n  postgres: 127.0.0.1:99999\n", "listen.postgres")]
    [InlineData("clients:\n  maxConnections: -1\n", "clients.maxConnections")]
    [InlineData("network:\n  transport: iouring\n", "network.transport")]
    [InlineData("network:\n  transport: epoll\n  epollLoops: 0\n", "network.epollLoops")]
    public void Load_InvalidValue_NamesTheKey(string yaml, string key)
    {
        var error = Assert.Throws<ConfigException>(() => ConfigLoader.LoadYaml(yaml + Minimal));
        Assert.Equal(key, error.Key);
    }

    [Fact]
    public void Load_Network_DefaultsToEpollWhereSupportedAndTakesEitherFromFileOrCommandLine()
    {
        var expected = MProxy.Edge.Networking.Epoll.EpollNative.IsSupported ? NetworkTransport.Epoll : NetworkTransport.Sockets;
        Assert.Equal(new NetworkConfig(expected, Math.Min(Environment.ProcessorCount, 64)), ConfigLoader.LoadYaml(Minimal).Network);
        Assert.Equal(NetworkTransport.Sockets, ConfigLoader.LoadYaml("network: { transport: sockets }\n" + Minimal).Network.Transport);
        Assert.Equal(new NetworkConfig(NetworkTransport.Epoll, 2), ConfigLoader.LoadYaml("network: { transport: epoll, epollLoops: 2 }\n" + Minimal).Network);
        var fromCommandLine = ConfigLoader.Load(new CommandLineOverrides
        {
            Primary = "postgres://bob:pw@db:5432/shop",
            Transport = "epoll",
            EpollLoops = 3,
        });
        Assert.Equal(new NetworkConfig(NetworkTransport.Epoll, 3), fromCommandLine.Network);
        Assert.True(fromCommandLine.Network.EpollParking); // on unless turned off
    }

    [Fact]
    public void Load_EpollParking_TurnedOffInTheFileOrOnTheCommandLine()
    {
        Assert.False(ConfigLoader.LoadYaml("network: { transport: epoll, epollParking: false }\n" + Minimal).Network.EpollParking);
        var fromCommandLine = ConfigLoader.Load(new CommandLineOverrides
        {
            Primary = "postgres://bob:pw@db:5432/shop",
            Transport = "epoll",
            EpollParking = false,
        });
        Assert.False(fromCommandLine.Network.EpollParking);
        Assert.Throws<ConfigException>(() => ConfigLoader.LoadYaml("network: { epollParking: sometimes }\n" + Minimal));
    }

    [Fact]
    public void Load_UnknownKey_ReportsItsNameAndLine()
    {
        var error = Assert.Throws<ConfigException>(() => ConfigLoader.LoadYaml(Minimal + "\npool:\n  sise: 3\n"));
        Assert.Contains("unknown key 'sise'", error.Message);
        Assert.StartsWith("config:8:", error.Key);
    }

    [Fact]
    public void Load_NoDatabase_SaysHowToAddOne()
    {
        var error = Assert.Throws<ConfigException>(() => ConfigLoader.LoadYaml("users: []"));
        Assert.Equal("databases", error.Key);
        Assert.Contains("--primary", error.Message);
    }

    [Fact]
    public void Load_DuplicateDatabase_NamesTheSecond()
    {
        var error = Assert.Throws<ConfigException>(() => ConfigLoader.LoadYaml(Minimal + "\n  - name: app\n    primary: h:1\n"));
        Assert.Equal("databases[1].name", error.Key);
    }

    [Fact]
    public void Load_ScramUserWithoutSecret_IsRejected()
    {
        var error = Assert.Throws<ConfigException>(() => ConfigLoader.LoadYaml("users: [ { name: x } ]\ndatabases: [ { name: d, primary: 'h:1' } ]"));
        Assert.Equal("users[0]", error.Key);
    }

    [Fact]
    public void Load_QuickStartPrimaryUrl_AddsDatabaseAndUser()
    {
        var config = ConfigLoader.Load(new CommandLineOverrides
        {
            Primary = "postgres://bob:p%40ss@db.internal:5544/shop",
            Listen = "0.0.0.0:7000",
            PoolSize = 7,
            PoolMode = "session",
        });
        var database = Assert.Single(config.Databases);
        Assert.Equal("shop", database.Name);
        Assert.Equal(new HostPort("db.internal", 5544), database.Primary);
        Assert.Equal(7, database.Pool.Size);
        Assert.Equal(PoolMode.Session, database.Pool.Mode);
        var user = Assert.Single(config.Users);
        Assert.Equal("bob", user.Name);
        Assert.Equal("p@ss", user.Password);
        Assert.Equal(7000, config.Listen.Postgres!.Port);
    }

    [Fact]
    public void UserConfig_ToString_NeverShowsSecrets()
    {
        var config = ConfigLoader.LoadYaml(Minimal);
        Assert.DoesNotContain("pw", config.Users[0].ToString(), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("host:5432", "host", 5432)]
    [InlineData("[::1]:6000", "::1", 6000)]
    [InlineData("10.1.2.3", "10.1.2.3", 5432)]
    public void ParseHostPort_Forms(string text, string host, int port) =>
        Assert.Equal(new HostPort(host, port), ConfigLoader.ParseHostPort("k", text, 5432));

    [Fact]
    public void DeployExample_LoadsAndEnablesEverySection()
    {
        var path = Path.Combine(AppContext.BaseDirectory, "deploy", "mproxy.yaml");
        var config = ConfigLoader.Load(new CommandLineOverrides { ConfigFile = path });
        Assert.True(config.Qos.Enabled);
        Assert.Equal(3, config.Qos.Groups.Count);
        Assert.False(config.Policy.Embedded);
        Assert.Equal(new HostPort("postgres-primary", 5432), Assert.Single(config.Databases).Primary);
        Assert.NotNull(config.Listen.Admin);
    }

    [Fact]
    public void Tls_Absent_IsOff()
    {
        Assert.Null(ConfigLoader.LoadYaml(Minimal).Tls);
    }

    [Fact]
    public void Tls_CertificateAndKey_AreLoaded_ModeDefaultsToAllow()
    {
        using var certificate = MProxy.TestSupport.TestCertificate.Create("CN=edge.example");
        var tls = ConfigLoader.LoadYaml(Minimal + "\n" + $"tls:\n  certificate: {certificate.CertificatePath}\n  key: {certificate.KeyPath}\n").Tls;
        Assert.NotNull(tls);
        Assert.Equal(TlsMode.Allow, tls.Mode);
        Assert.Equal("CN=edge.example", tls.Subject);
        Assert.Equal(certificate.Thumbprint, tls.Certificate.TargetCertificate.Thumbprint);
    }

    [Theory]
    [InlineData("tls:\n  key: {key}\n", "tls.certificate", "is required")]
    [InlineData("tls:\n  certificate: {cert}\n", "tls.key", "is required")]
    [InlineData("tls:\n  certificate: {cert}\n  key: {key}\n  mode: prefer\n", "tls.mode", "'prefer' is not one of allow, require")]
    [InlineData("tls:\n  certificate: /nonexistent/server.crt\n  key: {key}\n", "tls.certificate", "does not exist")]
    [InlineData("tls:\n  certificate: {key}\n  key: {key}\n", "tls.certificate", "cannot load the certificate")]
    [InlineData("tls:\n  certificate: {cert}\n  key: {cert}\n", "tls.certificate", "cannot load the certificate")]
    public void Tls_Invalid_NamesTheKey(string section, string key, string message)
    {
        using var certificate = MProxy.TestSupport.TestCertificate.Create();
        var yaml = Minimal + "\n" + section.Replace("{cert}", certificate.CertificatePath).Replace("{key}", certificate.KeyPath);
        var error = Assert.Throws<ConfigException>(() => ConfigLoader.LoadYaml(yaml));
        Assert.Equal(key, error.Key);
        Assert.Contains(message, error.Message);
    }

    [Fact]
    public void ServerTls_DefaultsToDisable_AndLoadsVerifyFullRoots()
    {
        Assert.Equal(ServerTlsMode.Disable, Assert.Single(ConfigLoader.LoadYaml(Minimal).Databases).ServerTls.Mode);
        using var root = MProxy.TestSupport.TestCertificate.Create("CN=db-root");
        var yaml = Minimal + $"\n    serverTls: {{ mode: verify-full, rootCertificate: {root.CertificatePath} }}\n";
        var tls = Assert.Single(ConfigLoader.LoadYaml(yaml).Databases).ServerTls;
        Assert.Equal(ServerTlsMode.VerifyFull, tls.Mode);
        Assert.Equal(root.Thumbprint, Assert.Single(tls.Roots!).Thumbprint);
    }

    [Theory]
    [InlineData("serverTls: { mode: verify-ca }", "databases[0].serverTls.mode", "'verify-ca' is not one of disable, prefer, require, verify-full")]
    [InlineData("serverTls: { mode: require, rootCertificate: {cert} }", "databases[0].serverTls.rootCertificate", "only used with mode: verify-full")]
    [InlineData("serverTls: { mode: verify-full, rootCertificate: /nonexistent/ca.pem }", "databases[0].serverTls.rootCertificate", "does not exist")]
    [InlineData("serverTls: { mode: verify-full, rootCertificate: {key} }", "databases[0].serverTls.rootCertificate", "holds no PEM certificate")]
    [InlineData("protocol: mysql\n    serverTls: { mode: require }", "databases[0].serverTls.mode", "not supported yet")]
    public void ServerTls_Invalid_NamesTheKey(string section, string key, string message)
    {
        using var certificate = MProxy.TestSupport.TestCertificate.Create();
        var yaml = Minimal + "\n    " + section.Replace("{cert}", certificate.CertificatePath).Replace("{key}", certificate.KeyPath) + "\n";
        var error = Assert.Throws<ConfigException>(() => ConfigLoader.LoadYaml(yaml));
        Assert.Equal(key, error.Key);
        Assert.Contains(message, error.Message);
    }
}
