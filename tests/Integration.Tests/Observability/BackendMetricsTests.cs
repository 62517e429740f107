using MProxy.Edge.Protocols.Postgres;
using MProxy.Integration.Tests.Backends;
using MProxy.TestSupport;

namespace MProxy.Integration.Tests.Observability;

/// <summary>Replication lag per replica, breaker state per backend and replica destinations in /metrics and SHOW BACKENDS, with a real streaming replica.</summary>
[Collection(ObservedEdge.Collection)]
public sealed class BackendMetricsTests : IAsyncLifetime
{
    private readonly PrimaryReplicaPair _pair = new();

    public ValueTask InitializeAsync() => _pair.InitializeAsync();

    public ValueTask DisposeAsync() => _pair.DisposeAsync();

    private string Config => $"""
        users:
          - name: {PostgresServer.AppUser}
            password: {PostgresServer.Password}
          - name: {ObservedEdge.Admin}
            password: {ObservedEdge.AdminPassword}
            admin: true
        databases:
          - name: app
            serverUser: app
            serverPassword: {PostgresServer.Password}
            backends:
              primary: 127.0.0.1:{_pair.Primary.Port}
              replicas: [ "127.0.0.1:{_pair.Replica.Port}" ]
              healthCheck: {"{"} intervalMs: 200, timeoutMs: 2000 {"}"}
              breaker: {"{"} failuresToOpen: 2, cooldownMs: 60000, cooldownMaxMs: 60000 {"}"}
              maxReplicaLagMs: 0

        """;

    [Fact]
    public async Task Scrape_WithReplica_LagPerReplicaBreakerPerBackendAndReplicaReads()
    {
        await using var edge = await ObservedEdge.StartAsync(Config);
        var backends = Assert.Single(edge.Get<PgPoolRegistry>().AllBackends);
        await TopologyWaiter.WaitForAsync(backends.Monitor, t => t.ReadReplicas.Length == 1 && t.HasUsablePrimary, "the replica qualifies", TimeSpan.FromSeconds(60));
        var replica = $"127.0.0.1:{_pair.Replica.Port}";
        var primary = $"127.0.0.1:{_pair.Primary.Port}";
        var (client, _) = await RawPgClient.LoginAsync(edge.Port, PostgresServer.AppUser, PostgresServer.AppDatabase, PostgresServer.Password);
        await using (client)
        {
            for (var i = 0; i < 3; i++)
            {
                await client.SendQueryAsync("SELECT 1");
                Assert.DoesNotContain(await client.ReadUntilReadyAsync(), m => m.Code == 'E');
            }
        }

        var (scrape, _) = await edge.ScrapeAsync();
        Assert.Equal(3, scrape.Value("mproxy_queries_total", ("database", "app"), ("type", "read"), ("destination", "replica")));
        Assert.Single(scrape.Samples("mproxy_replica_lag_bytes", ("host", replica)));
        Assert.Empty(scrape.Samples("mproxy_replica_lag_bytes", ("host", primary)));
        Assert.Equal(0, scrape.Value("mproxy_backend_breaker_state", ("host", replica)));
        Assert.Equal(0, scrape.Value("mproxy_backend_breaker_state", ("host", primary)));
        Assert.Equal(1, scrape.Value("mproxy_backend_serves_reads", ("host", replica)));

        // Replay paused and the primary writing: the replica's lag grows and shows.
        await _pair.Replica.ExecuteAsync("SELECT pg_wal_replay_pause()");
        try
        {
            await _pair.Primary.ExecuteAsync("INSERT INTO filler (payload) SELECT repeat('x', 100) FROM generate_series(1, 1000)", PostgresServer.AppDatabase);
            Assert.True(await ObservedEdge.EventuallyAsync(async () => (await edge.ScrapeAsync()).Scrape.Value("mproxy_replica_lag_bytes", ("host", replica)) > 0, TimeSpan.FromSeconds(30)),
                "the replica's lag did not show");
            var lagged = Assert.Single(await edge.AdminAsync("SHOW BACKENDS"), b => b["host"] == replica);
            Assert.Equal("replica", lagged["role"]);
        }
        finally
        {
            await _pair.Replica.ExecuteAsync("SELECT pg_wal_replay_resume()");
        }

        // The replica stops: its breaker opens.
        await _pair.Replica.StopProcessAsync("immediate");
        Assert.True(await ObservedEdge.EventuallyAsync(async () => (await edge.ScrapeAsync()).Scrape.Value("mproxy_backend_breaker_state", ("host", replica)) == 2, TimeSpan.FromSeconds(30)),
            "the replica's breaker did not open");
        var (after, _) = await edge.ScrapeAsync();
        Assert.Equal(0, after.Value("mproxy_backend_up", ("host", replica)));
        Assert.Equal(0, after.Value("mproxy_backend_serves_reads", ("host", replica)));
        Assert.Equal(0, after.Value("mproxy_backend_breaker_state", ("host", primary)));
        Assert.Equal("open", Assert.Single(await edge.AdminAsync("SHOW BACKENDS"), b => b["host"] == replica)["breaker"]);
    }
}
