using MProxy.Edge.Telemetry;
using MProxy.TestSupport;
using MySql.Data.MySqlClient;

namespace MProxy.Integration.Tests.MySql;

/// <summary>MySQL request units feed the same telemetry as PostgreSQL's: query counts, latency per fingerprint, bytes.</summary>
[Collection(MariaDbCollection.Name)]
public sealed class MySqlTelemetryTests(MariaDbFixture fixture)
{
    [Fact]
    public async Task Queries_CountedByTypeAndTenant_InTheSameMetricsAsPostgres()
    {
        await using var edge = await MySqlEdgeServer.StartAsync(MySqlEdgeServer.AppConfig(fixture.Server, extra: $$"""
            qos:
              groups:
                - { name: oltp, ruPerSecond: 100000, burst: 100000, priority: high }
              tenants:
                - { name: {{MariaDbServer.AppUser}}, group: oltp }
            """));
        const int reads = 6, writes = 2;
        PrometheusScrape before; // MySql.Data runs queries of its own when it connects
        await using (var connection = await MariaDbFixture.OpenAsync(edge.Port))
        {
            await using (var create = new MySqlCommand("CREATE TABLE IF NOT EXISTS telemetry_items (n int)", connection))
                await create.ExecuteNonQueryAsync();
            before = PrometheusScrape.Parse(edge.Get<PrometheusExporter>().Scrape());
            for (var i = 0; i < reads; i++)
            {
                await using var read = new MySqlCommand("SELECT 1", connection);
                await read.ExecuteScalarAsync();
            }
            for (var i = 0; i < writes; i++)
            {
                await using var write = new MySqlCommand($"INSERT INTO telemetry_items VALUES ({i})", connection);
                await write.ExecuteNonQueryAsync();
            }
        }

        var scrape = PrometheusScrape.Parse(edge.Get<PrometheusExporter>().Scrape());

        (string, string)[] tenant = [("database", MariaDbServer.AppDatabase), ("tenant", MariaDbServer.AppUser)];
        (string, string)[] readLabels = [.. tenant, ("type", "read"), ("destination", "primary")];
        (string, string)[] writeLabels = [.. tenant, ("type", "write"), ("destination", "primary")];
        Assert.Equal(reads, scrape.Value("mproxy_queries_total", readLabels) - before.Value("mproxy_queries_total", readLabels));
        Assert.Equal(writes, scrape.Value("mproxy_queries_total", writeLabels) - before.Value("mproxy_queries_total", writeLabels));
        Assert.True(scrape.Value("mproxy_relayed_bytes_total", [.. tenant, ("direction", "to_client")]) > 0);
        Assert.True(scrape.Value("mproxy_relayed_bytes_total", [.. tenant, ("direction", "to_server")]) > 0);
        Assert.True(scrape.Sum("mproxy_query_duration_seconds_count", ("database", MariaDbServer.AppDatabase)) >= reads + writes);
        Assert.True(scrape.Sum("mproxy_scheduler_wait_seconds_count", ("priority", "high")) >= reads + writes);
    }
}
