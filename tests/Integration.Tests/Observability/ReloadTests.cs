using System.Globalization;
using MProxy.Edge.Hosting;
using MProxy.Edge.Qos;
using MProxy.TestSupport;
using Npgsql;

namespace MProxy.Integration.Tests.Observability;

/// <summary>
/// Configuration reload without a restart — by file change, SIGHUP and the admin console's RELOAD —
/// against a connected client that must stay connected.
/// </summary>
[Collection(ObservedEdge.Collection)]
public sealed class ReloadTests(PostgresFixture postgres) : IAsyncLifetime
{
    internal const string Tenant = "reload_tenant";
    private const int ReloadFailedEvent = 4041; // ReloadLog.Failed

    private PostgresServer Server => postgres.Server;

    public async ValueTask InitializeAsync() => await CreateTenantRoleAsync(Server);

    internal static Task CreateTenantRoleAsync(PostgresServer server) =>
        server.ExecuteAsync($"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{Tenant}') THEN CREATE ROLE {Tenant} LOGIN PASSWORD '{PostgresServer.Password}'; END IF; END $$");

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;

    private string Config(int ruPerSecond, bool watchFile = true) => Config(Server, ruPerSecond, watchFile);

    internal static string Config(PostgresServer server, int ruPerSecond, bool watchFile = true) => ObservedEdge.Users(server, Tenant) + string.Create(CultureInfo.InvariantCulture, $$"""
        pool: { size: 2, waitTimeoutMs: 5000 }
        reload: { watchFile: {{(watchFile ? "true" : "false")}}, debounceMs: 50 }
        qos:
          groups:
            - { name: oltp, ruPerSecond: {{ruPerSecond}}, burst: {{ruPerSecond}}, debtMax: 1, maxBudgetWaitMs: 0, priority: medium }
          tenants:
            - { name: {{Tenant}}, group: oltp }
        """);

    internal static double Budget(ObservedEdge edge) =>
        edge.Get<QosGate>().GetTenants().Single(t => t.Name == Tenant).Home.Bucket.Settings.RuPerSecond;

    internal static async Task<int> BackendPidAsync(NpgsqlConnection connection)
    {
        await using var command = new NpgsqlCommand("SELECT 7", connection);
        Assert.Equal(7, await command.ExecuteScalarAsync());
        return connection.ProcessID;
    }

    private async Task<NpgsqlConnection> OpenDirectAsync()
    {
        var connection = new NpgsqlConnection(Server.ConnectionString(database: PostgresServer.AppDatabase));
        await connection.OpenAsync();
        return connection;
    }

    private static async Task<double> ScrapedBudgetAsync(ObservedEdge edge) =>
        (await edge.ScrapeAsync()).Scrape.Value("mproxy_tenant_budget_ru_per_second", ("tenant", Tenant));

    [Fact]
    public async Task FileChange_TenantBudgetChanges_ClientStaysConnected()
    {
        await using var edge = await ObservedEdge.StartAsync(Config(100_000));
        await using var client = await edge.OpenAsync(Tenant);
        var clientId = await BackendPidAsync(client);
        Assert.Equal(100_000, await ScrapedBudgetAsync(edge));

        await edge.RewriteAsync(Config(2_000));

        Assert.True(await ObservedEdge.EventuallyAsync(async () => await ScrapedBudgetAsync(edge) == 2_000), "the file change was not applied");
        Assert.Equal(2_000, Budget(edge));
        Assert.Equal(clientId, await BackendPidAsync(client)); // same client connection (the edge's process id for it)
        Assert.Equal(2, (await edge.ScrapeAsync()).Scrape.Value("mproxy_config_generation"));
    }

    [Fact]
    public async Task Reload_UnchangedDatabase_KeepsItsPoolMonitorAndServerConnections()
    {
        // The database has monitor credentials (serverUser), so it has a backends section and a
        // health monitor; a reload that does not change it must not close its pool or monitor.
        await using var edge = await ObservedEdge.StartAsync(Config(100_000, watchFile: false));
        await using var client = await edge.OpenAsync(Tenant);
        await BackendPidAsync(client);
        var registry = edge.Get<MProxy.Edge.Protocols.Postgres.PgPoolRegistry>();
        var pool = Assert.Single(registry.All);
        var backends = Assert.Single(registry.AllBackends);
        var servers = pool.Live.Select(s => s.Id).Order().ToList();
        Assert.NotEmpty(servers);

        await edge.RewriteAsync(Config(2_000, watchFile: false));
        Assert.True(edge.Get<ConfigReloader>().Reload("test").Applied);

        Assert.Same(pool, Assert.Single(registry.All));
        Assert.Same(backends, Assert.Single(registry.AllBackends));
        Assert.Equal(servers, pool.Live.Select(s => s.Id).Order().ToList());
        await BackendPidAsync(client);
        Assert.Same(pool, Assert.Single(registry.All));
    }

    [Fact]
    public async Task AdminReload_BudgetCutToAlmostNothing_InFlightQueryFinishesThenLaterQueriesThrottled()
    {
        await using var edge = await ObservedEdge.StartAsync(Config(100_000, watchFile: false));
        var (client, _) = await RawPgClient.LoginAsync(edge.Port, Tenant, PostgresServer.AppDatabase, PostgresServer.Password);
        await using var _ = client;
        await using var observer = await OpenDirectAsync();

        // A query in flight on the old snapshot: it holds until the test releases an advisory lock.
        await using var holder = await OpenDirectAsync();
        await using (var take = new NpgsqlCommand("SELECT pg_advisory_lock(424242)", holder))
            await take.ExecuteNonQueryAsync();
        await client.SendQueryAsync("SELECT pg_advisory_lock_shared(424242), 'done'");
        Assert.True(await ObservedEdge.EventuallyAsync(async () =>
        {
            await using var waiting = new NpgsqlCommand("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%pg_advisory_lock_shared(424242)%'", observer);
            return (long)(await waiting.ExecuteScalarAsync())! == 1;
        }), "the query did not reach the server");

        await edge.RewriteAsync(Config(1));
        var reload = Assert.Single(await edge.AdminAsync("RELOAD"));
        Assert.Equal("applied", reload["result"]);
        Assert.Equal(1, Budget(edge));

        await using (var release = new NpgsqlCommand("SELECT pg_advisory_unlock(424242)", holder))
            await release.ExecuteNonQueryAsync();
        var answer = await client.ReadUntilReadyAsync();
        Assert.DoesNotContain(answer, m => m.Code == 'E');
        Assert.Contains(answer, m => m.Code == 'D' && m.Text.Contains("done", StringComparison.Ordinal));

        // The new budget (1 RU/s, burst 1, no waiting) refuses the tenant's next queries with 53400; the
        // client stays connected through the reload and the refusals.
        PgWireMessage? refused = null;
        for (var i = 0; i < 20 && refused is null; i++)
        {
            await client.SendQueryAsync("SELECT 1");
            var reply = await client.ReadUntilReadyAsync();
            Assert.Equal('Z', reply[^1].Code);
            refused = reply.FirstOrDefault(m => m.Code == 'E') is { Code: 'E' } e ? e : null;
        }
        Assert.NotNull(refused);
        Assert.Equal("53400", refused.Value.SqlState);
        Assert.Equal("ERROR", refused.Value.Severity);
        Assert.Contains(Tenant, refused.Value.MessageText, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Reload_InvalidFile_RejectedWithTheKey_OldConfigurationKept()
    {
        await using var edge = await ObservedEdge.StartAsync(Config(100_000, watchFile: false));
        await using var client = await edge.OpenAsync(Tenant);
        await edge.RewriteAsync(Config(2_000).Replace("group: oltp }", "group: no_such_group }", StringComparison.Ordinal));

        await using var admin = await edge.OpenAdminAsync();
        await using var reload = new NpgsqlCommand("RELOAD", admin);
        var e = await Assert.ThrowsAsync<PostgresException>(() => reload.ExecuteNonQueryAsync());

        Assert.Equal("F0000", e.SqlState);
        Assert.Contains("qos.tenants[0]", e.MessageText, StringComparison.Ordinal);
        Assert.Contains("the configuration in force is kept", e.MessageText, StringComparison.Ordinal);
        Assert.Equal(100_000, Budget(edge));
        var (scrape, _) = await edge.ScrapeAsync();
        Assert.Equal(1, scrape.Value("mproxy_config_generation"));
        Assert.Equal(1, scrape.Value("mproxy_config_reloads_total", ("result", "failed")));
        Assert.Equal(0, scrape.Value("mproxy_config_last_reload_success"));
        Assert.True(await BackendPidAsync(client) > 0);
        Assert.Contains(edge.Logs(), l => l.EventId.Id == ReloadFailedEvent && l.Message.Contains("qos.tenants[0]", StringComparison.Ordinal));
    }

    [Fact]
    public async Task FileChange_InvalidYaml_RejectedAndLogged_OldConfigurationKept()
    {
        await using var edge = await ObservedEdge.StartAsync(Config(100_000));
        await using var client = await edge.OpenAsync(Tenant);

        await edge.RewriteAsync(Config(2_000) + "\n  this: [is not yaml\n");

        Assert.True(await ObservedEdge.EventuallyAsync(() => Task.FromResult(edge.Logs().Any(l => l.EventId.Id == ReloadFailedEvent))), "the failure was not logged");
        Assert.Equal(100_000, Budget(edge));
        Assert.Equal(1, edge.Get<ConfigReloader>().Generation);
        Assert.True(await BackendPidAsync(client) > 0);
    }
}
