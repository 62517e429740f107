using MProxy.Edge.Protocols.Postgres;
using MProxy.Edge.Qos;
using MProxy.TestSupport;

namespace MProxy.Integration.Tests.Observability;

/// <summary>/metrics on the admin port after known traffic, through the edge to real PostgreSQL.</summary>
[Collection(ObservedEdge.Collection)]
public sealed class MetricsTests(PostgresFixture postgres) : IAsyncLifetime
{
    private PostgresServer Server => postgres.Server;

    public async ValueTask InitializeAsync()
    {
        await Server.ExecuteAsync($"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'obs_tenant') THEN CREATE ROLE obs_tenant LOGIN PASSWORD '{PostgresServer.Password}'; END IF; END $$");
        await Server.ExecuteAsync("CREATE TABLE IF NOT EXISTS obs_metrics (n int)", PostgresServer.AppDatabase);
        await Server.ExecuteAsync("GRANT ALL ON obs_metrics TO PUBLIC", PostgresServer.AppDatabase);
    }

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;

    private string Config(string groups = "- { name: oltp, ruPerSecond: 100000, burst: 100000, priority: high }") => ObservedEdge.Users(Server, "obs_tenant") + $"""
        pool: {"{"} size: 3, waitTimeoutMs: 5000 {"}"}
        qos:
          groups:
            {groups}
          tenants:
            - {"{"} name: obs_tenant, group: oltp {"}"}
        """;

    [Fact]
    public async Task Scrape_AfterKnownTraffic_CountersHistogramsAndPoolGaugesMatch()
    {
        const int reads = 25, writes = 7;
        await using var edge = await ObservedEdge.StartAsync(Config());
        var (client, _) = await RawPgClient.LoginAsync(edge.Port, "obs_tenant", PostgresServer.AppDatabase, PostgresServer.Password);
        await using var _ = client;
        for (var i = 0; i < reads; i++)
        {
            await client.SendQueryAsync("SELECT 1");
            Assert.Equal('Z', (await client.ReadUntilReadyAsync())[^1].Code);
        }
        for (var i = 0; i < writes; i++)
        {
            await client.SendQueryAsync($"INSERT INTO obs_metrics VALUES ({i})");
            Assert.Equal('Z', (await client.ReadUntilReadyAsync())[^1].Code);
        }

        // The connection goes back to the pool just after the client sees ReadyForQuery.
        var registry = edge.Get<PgPoolRegistry>();
        Assert.True(await ObservedEdge.EventuallyAsync(() => Task.FromResult(registry.All.Single().Connections.GetStats().Active == 0)));
        var (scrape, contentType) = await edge.ScrapeAsync();
        var pool = registry.All.Single().Connections.GetStats();
        var account = edge.Get<QosGate>().GetTenants().Single(t => t.Name == "obs_tenant").Home;

        Assert.StartsWith("text/plain; version=0.0.4", contentType);
        (string, string)[] tenant = [("database", "app"), ("tenant", "obs_tenant")];
        Assert.Equal(reads, scrape.Value("mproxy_queries_total", [.. tenant, ("type", "read"), ("destination", "primary")]));
        Assert.Equal(writes, scrape.Value("mproxy_queries_total", [.. tenant, ("type", "write"), ("destination", "primary")]));
        Assert.Equal(reads, scrape.Value("mproxy_query_duration_seconds_count", ("database", "app"), ("type", "read"), ("destination", "primary")));
        Assert.Equal(writes, scrape.Value("mproxy_query_duration_seconds_count", ("database", "app"), ("type", "write"), ("destination", "primary")));
        Assert.Equal(reads + writes, scrape.Sum("mproxy_fingerprint_duration_seconds_count"));
        Assert.True(scrape.Value("mproxy_relayed_bytes_total", [.. tenant, ("direction", "to_client")]) > 0);

        (string, string)[] tenantAccount = [("tenant", "obs_tenant"), ("group", "oltp"), ("priority", "high")];
        Assert.Equal(reads + writes, scrape.Value("mproxy_tenant_admitted_total", tenantAccount));
        Assert.Equal(account.RuCharged, scrape.Value("mproxy_tenant_ru_total", tenantAccount), 6);
        Assert.Equal(0, scrape.Value("mproxy_tenant_refused_total", [.. tenantAccount, ("reason", "budget")]));
        Assert.Equal(100000, scrape.Value("mproxy_tenant_budget_ru_per_second", tenantAccount));

        (string, string)[] poolLabels = [("database", "app"), ("user", "app")];
        Assert.Equal(pool.Size, scrape.Value("mproxy_pool_size", poolLabels));
        Assert.Equal(3, pool.Size);
        Assert.Equal(pool.Idle, scrape.Value("mproxy_pool_connections", [.. poolLabels, ("state", "idle")]));
        Assert.Equal(pool.Active, scrape.Value("mproxy_pool_connections", [.. poolLabels, ("state", "active")]));
        Assert.True(pool.Idle >= 1);
        Assert.Equal(0, scrape.Value("mproxy_pool_waiting", poolLabels));
        // One scheduler slot per unit that needed a server connection: a query that arrives before the
        // edge has released the previous one's connection (the client sends on ReadyForQuery, the edge
        // releases just after relaying it) continues on that connection and its slot.
        var granted = scrape.Sum("mproxy_scheduler_outcomes_total", ("outcome", "granted"));
        Assert.InRange(granted, 1, reads + writes);
        Assert.Equal(granted, scrape.Sum("mproxy_scheduler_wait_seconds_count", ("priority", "high")));
        Assert.Equal(1, scrape.Value("mproxy_clients_connected"));
        Assert.Equal(1, scrape.Value("mproxy_policy_state", ("state", "connected")) + scrape.Value("mproxy_policy_state", ("state", "starting")));
        Assert.Equal(0, scrape.Value("mproxy_policy_degraded"));
        Assert.Equal(1, scrape.Value("mproxy_backend_up", ("database", "app"), ("role", "primary")));
        Assert.Equal(0, scrape.Value("mproxy_backend_breaker_state", ("database", "app")));
        Assert.Equal(1, scrape.Value("mproxy_config_generation"));
    }

    [Fact]
    public async Task Scrape_AfterTransactions_DeferredBeginsCountedApartFromQueries()
    {
        const int transactions = 3;
        await using var edge = await ObservedEdge.StartAsync(Config());
        var (client, _) = await RawPgClient.LoginAsync(edge.Port, "obs_tenant", PostgresServer.AppDatabase, PostgresServer.Password);
        await using var _ = client;
        foreach (var sql in Enumerable.Repeat(new[] { "BEGIN", "SELECT 1", "COMMIT" }, transactions).SelectMany(t => t).Concat(["BEGIN", "COMMIT"]))
        {
            await client.SendQueryAsync(sql);
            Assert.Equal('Z', (await client.ReadUntilReadyAsync())[^1].Code);
        }

        var (scrape, _) = await edge.ScrapeAsync();
        (string, string)[] tenant = [("database", "app"), ("tenant", "obs_tenant")];
        // Every BEGIN was answered by the edge (the last transaction, empty, never reached a server).
        Assert.Equal(transactions + 1, scrape.Value("mproxy_deferred_begins_total", tenant));
        // Not request units: what went to the server is each transaction's SELECT and COMMIT.
        Assert.Equal(2 * transactions, scrape.Sum("mproxy_queries_total", tenant));
    }

    [Fact]
    public async Task Scrape_BudgetExhausted_RefusalsCountedPerTenantAndPriority()
    {
        await using var edge = await ObservedEdge.StartAsync(Config("- { name: oltp, ruPerSecond: 1, burst: 3, debtMax: 1, maxBudgetWaitMs: 0, priority: low }"));
        var (client, _) = await RawPgClient.LoginAsync(edge.Port, "obs_tenant", PostgresServer.AppDatabase, PostgresServer.Password);
        await using var _ = client;
        var refused = 0;
        var admitted = 0;
        for (var i = 0; i < 12; i++)
        {
            await client.SendQueryAsync("SELECT 1");
            if ((await client.ReadUntilReadyAsync()).Any(m => m is { Code: 'E', SqlState: "53400" }))
                refused++;
            else
                admitted++;
        }

        var (scrape, _) = await edge.ScrapeAsync();

        Assert.True(refused > 0, "the tiny budget should have refused some queries");
        (string, string)[] account = [("tenant", "obs_tenant"), ("group", "oltp"), ("priority", "low")];
        Assert.Equal(refused, scrape.Value("mproxy_tenant_refused_total", [.. account, ("reason", "budget")]));
        Assert.Equal(admitted, scrape.Value("mproxy_tenant_admitted_total", account));
        Assert.Equal(admitted, scrape.Value("mproxy_queries_total", ("tenant", "obs_tenant"), ("type", "read")));
    }

    [Fact]
    public async Task Scrape_WithoutQos_QueriesCountedUnderTheUser()
    {
        await using var edge = await ObservedEdge.StartAsync(ObservedEdge.Users(Server));
        var (client, _) = await RawPgClient.LoginAsync(edge.Port, PostgresServer.AppUser, PostgresServer.AppDatabase, PostgresServer.Password);
        await using var _ = client;
        for (var i = 0; i < 4; i++)
        {
            await client.SendQueryAsync("SELECT 1");
            await client.ReadUntilReadyAsync();
        }

        var (scrape, _) = await edge.ScrapeAsync();

        Assert.Equal(4, scrape.Value("mproxy_queries_total", ("tenant", "app"), ("type", "read"), ("destination", "primary")));
        Assert.Empty(scrape.Samples("mproxy_tenant_ru_total"));
    }

    [Fact]
    public async Task MetricsOff_NoEndpointAndNoExporter_QueriesStillCountedForTheConsole()
    {
        await using var edge = await ObservedEdge.StartAsync(ObservedEdge.Users(Server) + """

            telemetry:
              metrics: false
            """);
        var (client, _) = await RawPgClient.LoginAsync(edge.Port, PostgresServer.AppUser, PostgresServer.AppDatabase, PostgresServer.Password);
        await using var _ = client;
        for (var i = 0; i < 3; i++)
        {
            await client.SendQueryAsync("SELECT 1");
            Assert.DoesNotContain(await client.ReadUntilReadyAsync(), m => m.Code == 'E');
        }

        using var response = await edge.GetAdminAsync("/metrics");
        Assert.Equal(System.Net.HttpStatusCode.NotFound, response.StatusCode);
        // Nothing listens to the meter for an endpoint that is not served.
        Assert.Null(edge.Find<MProxy.Edge.Telemetry.PrometheusExporter>());
        var cell = Assert.Single(edge.Get<MProxy.Edge.Telemetry.EdgeTelemetry>().Queries.Snapshot());
        Assert.Equal(3, cell.Queries(MProxy.Edge.Telemetry.UnitType.Read, replica: false));
    }

    private static async Task OneQueryAsync(ObservedEdge edge)
    {
        var (client, _) = await RawPgClient.LoginAsync(edge.Port, "obs_tenant", PostgresServer.AppDatabase, PostgresServer.Password);
        await using var _ = client;
        await client.SendQueryAsync("SELECT 1");
        Assert.DoesNotContain(await client.ReadUntilReadyAsync(), m => m.Code == 'E');
    }

    [Fact]
    public async Task Scrape_EmbeddedPolicyTier_TenantRunsOnALease()
    {
        await using var edge = await ObservedEdge.StartAsync(Config());
        await OneQueryAsync(edge);
        Assert.True(await ObservedEdge.EventuallyAsync(async () =>
            (await edge.ScrapeAsync()).Scrape.Samples("mproxy_policy_lease", ("tenant", "obs_tenant"), ("source", "lease")).Any(), TimeSpan.FromSeconds(30)));

        var (scrape, _) = await edge.ScrapeAsync();

        Assert.Equal(1, scrape.Value("mproxy_policy_lease", ("tenant", "obs_tenant"), ("source", "lease")));
        Assert.Equal(0, scrape.Sum("mproxy_policy_lease", ("tenant", "obs_tenant"), ("source", "configured")));
        Assert.Equal(0, scrape.Value("mproxy_policy_degraded"));
        Assert.Equal(100000, scrape.Value("mproxy_policy_allowance_ru_per_second", ("tenant", "obs_tenant")));
    }

    [Fact]
    public async Task Scrape_PolicyTierUnreachable_DegradedModeAndLocalShareReported()
    {
        var silo = FreePort.Next(); // nothing listens there
        await using var edge = await ObservedEdge.StartAsync(Config() + $"""

            policy:
              silos: [ "http://127.0.0.1:{silo}" ]
              callTimeoutMs: 500
            """);
        await OneQueryAsync(edge); // QoS does not wait for the policy tier
        Assert.True(await ObservedEdge.EventuallyAsync(async () => (await edge.ScrapeAsync()).Scrape.Value("mproxy_policy_degraded") == 1, TimeSpan.FromSeconds(30)));

        var (scrape, _) = await edge.ScrapeAsync();

        Assert.Equal(1, scrape.Value("mproxy_policy_state", ("state", "degraded")));
        Assert.Equal(0, scrape.Value("mproxy_policy_state", ("state", "connected")));
        // Never leased: the tenant runs on its configured group budget.
        Assert.Equal(1, scrape.Value("mproxy_policy_lease", ("tenant", "obs_tenant"), ("source", "configured")));
        Assert.True(scrape.Value("mproxy_policy_consecutive_failures") >= 1);
    }
}
