using MProxy.Edge.Backends;
using MProxy.Edge.Protocols.Postgres;
using MProxy.Integration.Tests.Backends;
using MProxy.Integration.Tests.Observability;
using MProxy.TestSupport;
using Npgsql;

namespace MProxy.Integration.Tests.Postgres;

/// <summary>A PostgreSQL server that accepts TCP logins only over TLS, with its certificate.</summary>
public sealed class TlsOnlyPostgresFixture : IAsyncLifetime
{
    private PostgresServer? _server;

    public TestCertificate Certificate { get; } = TestCertificate.Create("CN=mproxy-test-server");

    public PostgresServer Server => _server ?? throw new InvalidOperationException("PostgreSQL did not start");

    public async ValueTask InitializeAsync()
    {
        _server = await PostgresServer.StartAsync();
        await _server.EnableTlsAsync(Certificate.CertificatePath, Certificate.KeyPath, refuseCleartext: true);
    }

    public async ValueTask DisposeAsync()
    {
        if (_server is not null)
            await _server.DisposeAsync();
        Certificate.Dispose();
    }
}

/// <summary>TLS from the edge to its servers (<c>databases[].serverTls</c>), against real PostgreSQL.</summary>
public sealed class ServerTlsTests(TlsOnlyPostgresFixture tlsServer, PostgresFixture cleartextServer) : IClassFixture<TlsOnlyPostgresFixture>
{
    private const string IsTls = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";

    private static string Config(PostgresServer server, string serverTls, string backends = "") => $"""
        users:
          - name: {PostgresServer.AppUser}
            password: {PostgresServer.Password}
        pool:
          size: 2
        databases:
          - name: {PostgresServer.AppDatabase}
            primary: 127.0.0.1:{server.Port}
            serverUser: {PostgresServer.AppUser}
            serverPassword: {PostgresServer.Password}
            {serverTls}
            {backends}
        """;

    [Theory]
    [InlineData("require")]
    [InlineData("prefer")]
    public async Task Require_Or_Prefer_ReachesATlsOnlyServer_OverTls(string mode)
    {
        await using var edge = await EdgeServer.StartAsync(Config(tlsServer.Server, $"serverTls: {{ mode: {mode} }}"));
        await using var connection = await edge.OpenAsync();
        for (var i = 0; i < 3; i++)
            Assert.Equal(true, await new NpgsqlCommand(IsTls, connection).ExecuteScalarAsync());
        await using (var big = new NpgsqlCommand("SELECT string_agg(md5(g::text), '') FROM generate_series(1, 20000) g", connection))
            Assert.Equal(20000 * 32, ((string)(await big.ExecuteScalarAsync())!).Length);
    }

    [Fact]
    public async Task Disable_TheDefault_IsRefusedByATlsOnlyServer()
    {
        await using var edge = await EdgeServer.StartAsync(Config(tlsServer.Server, ""));
        var error = await Assert.ThrowsAsync<PostgresException>(async () => await edge.OpenAsync());
        Assert.Contains("no encryption", error.MessageText);
    }

    [Fact]
    public async Task VerifyFull_WithTheServersRoot_Connects()
    {
        await using var edge = await EdgeServer.StartAsync(Config(tlsServer.Server,
            $"serverTls: {{ mode: verify-full, rootCertificate: {tlsServer.Certificate.CertificatePath} }}"));
        await using var connection = await edge.OpenAsync();
        Assert.Equal(true, await new NpgsqlCommand(IsTls, connection).ExecuteScalarAsync());
    }

    [Fact]
    public async Task VerifyFull_WithAnotherRoot_RefusesTheServer_AndSaysWhy()
    {
        using var stranger = TestCertificate.Create("CN=not-the-servers-ca");
        await using var edge = await EdgeServer.StartAsync(Config(tlsServer.Server,
            $"serverTls: {{ mode: verify-full, rootCertificate: {stranger.CertificatePath} }}"));
        var error = await Assert.ThrowsAsync<PostgresException>(async () => await edge.OpenAsync());
        Assert.Equal("57P03", error.SqlState);
        Assert.Contains("TLS handshake failed (serverTls.mode is verify-full)", error.MessageText);
    }

    [Fact]
    public async Task Require_AgainstACleartextServer_Fails_PreferFallsBackToCleartext()
    {
        await using (var strict = await EdgeServer.StartAsync(Config(cleartextServer.Server, "serverTls: { mode: require }")))
        {
            var error = await Assert.ThrowsAsync<PostgresException>(async () => await strict.OpenAsync());
            Assert.Contains("the server does not accept TLS and serverTls.mode is require", error.MessageText);
        }
        await using var lenient = await EdgeServer.StartAsync(Config(cleartextServer.Server, "serverTls: { mode: prefer }"));
        await using var connection = await lenient.OpenAsync();
        Assert.False((bool)(await new NpgsqlCommand(IsTls, connection).ExecuteScalarAsync())!);
    }

    [Fact]
    public async Task HealthChecks_LogInOverTlsToo()
    {
        await using var edge = await EdgeServer.StartAsync(Config(tlsServer.Server, "serverTls: { mode: require }", $$"""
            backends:
                  primary: 127.0.0.1:{{tlsServer.Server.Port}}
                  healthCheck: { intervalMs: 200, timeoutMs: 2000 }
            """));
        await using var connection = await edge.OpenAsync();
        Assert.Equal(true, await new NpgsqlCommand(IsTls, connection).ExecuteScalarAsync());
        var backends = Assert.Single(edge.Get<PgPoolRegistry>().AllBackends);
        var topology = await TopologyWaiter.WaitForAsync(backends.Monitor, t => t.Backends[0].Role == BackendRole.Primary && t.Backends[0].LastError is null,
            "the health check logged in over TLS", TimeSpan.FromSeconds(30));
        Assert.Equal(BreakerState.Closed, topology.Backends[0].Breaker);
    }

    [Fact]
    public async Task ServerConnectionKilledUnderTls_IsReplaced_AndTheClientCarriesOn()
    {
        await using var edge = await EdgeServer.StartAsync(Config(tlsServer.Server, "serverTls: { mode: require }"));
        await using var connection = await edge.OpenAsync();
        var first = (int)(await new NpgsqlCommand("SELECT pg_backend_pid()", connection).ExecuteScalarAsync())!;
        Assert.Equal(true, await tlsServer.Server.ScalarAsync($"SELECT pg_terminate_backend({first})"));
        // The idle pooled connection dies. The edge reads every idle server connection, so it sees the
        // server's goodbye and drops the connection; the next query then gets a new one. (Querying
        // before the edge has seen the goodbye races it: the query would meet the dying connection
        // and the client would be closed with the server's 57P01 or the edge's 08006 — a real race
        // that no proxy can close, so the test waits for the edge rather than retrying.)
        var pool = Assert.Single(edge.Get<PgPoolRegistry>().All);
        Assert.True(await ObservedEdge.EventuallyAsync(() => Task.FromResult(pool.Connections.GetStats().Total == 0), TimeSpan.FromSeconds(10)),
            "the edge did not drop the killed server connection: " + pool.Connections.GetStats());
        var second = await new NpgsqlCommand("SELECT pg_backend_pid()", connection).ExecuteScalarAsync();
        Assert.NotNull(second);
        Assert.NotEqual(first, (int)second);
        Assert.Equal(true, await new NpgsqlCommand(IsTls, connection).ExecuteScalarAsync());
    }
}
