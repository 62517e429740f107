using System.Diagnostics;
using MProxy.Edge.Protocols.Postgres;
using MProxy.TestSupport;
using Npgsql;

namespace MProxy.Integration.Tests.Policy;

/// <summary>A database's connection limit in the silo's policy holds across edges: each edge's pool shrinks to the slots it is leased.</summary>
public sealed class CapacityLeaseTests(PostgresFixture postgres)
{
    private static CancellationToken Token => TestContext.Current.CancellationToken;

    private PostgresServer Server => postgres.Server;

    [Fact]
    public async Task TwoEdgesWithPoolsOfFour_UnderALimitOfFour_HoldAtMostFourServerConnectionsTogether()
    {
        var serverUser = $"cap_{Guid.NewGuid():n}"[..16];
        await Server.ExecuteAsync($"CREATE ROLE {serverUser} LOGIN PASSWORD '{PostgresServer.Password}'");
        var policyFile = Path.Combine(Path.GetTempPath(), $"mproxy-policy-{Guid.NewGuid():n}.yaml");
        await File.WriteAllTextAsync(policyFile, """
            leasePeriodMs: 3000
            exchangeIntervalMs: 500
            edgeLivenessMs: 2000
            backends:
              - { name: app, maxConnections: 4 }
            """, Token);
        await using var silo = await SiloProcess.StartAsync(FreePort.Next(), FreePort.Next(), "memory", policyFile, Token);
        var edges = new List<EdgeServer>();
        using var stop = new CancellationTokenSource();
        var load = new List<Task>();
        try
        {
            for (var i = 1; i <= 2; i++)
                edges.Add(await EdgeServer.StartAsync(EdgeConfig(silo.EdgeApi, $"edge-{i}", serverUser)));
            foreach (var edge in edges)
                for (var c = 0; c < 4; c++)
                    load.Add(RunClientAsync(edge, stop.Token));

            // Both edges want four; the silo leases each two.
            var waited = Stopwatch.StartNew();
            while (!edges.All(e => Pool(e) is { } pool && pool.Connections.Settings.Size == 2))
            {
                Assert.True(waited.Elapsed < TimeSpan.FromSeconds(30), $"pools never shrank to their leased slots; silo output:\n{silo.Output}");
                await Task.Delay(100, Token);
            }
            // Pooled connections only: the edges' health checks of the database (one connection per
            // edge, named "mproxy health check") hold no pool slot.
            var most = 0L;
            for (var i = 0; i < 20; i++)
            {
                await Task.Delay(150, Token);
                most = Math.Max(most, (long)(await Server.ScalarAsync(
                    $"SELECT count(*) FROM pg_stat_activity WHERE usename = '{serverUser}' AND backend_type = 'client backend' AND application_name <> 'mproxy health check'", "postgres"))!);
            }
            Assert.InRange(most, 1, 4);
            foreach (var edge in edges)
                Assert.InRange(Pool(edge)!.Connections.GetStats().Total, 1, 2);
        }
        finally
        {
            await stop.CancelAsync();
            await Task.WhenAll(load.Select(t => t.ContinueWith(_ => { }, TaskScheduler.Default)));
            foreach (var edge in edges)
                await edge.DisposeAsync();
            File.Delete(policyFile);
        }
        foreach (var task in load)
            Assert.Null(task.Exception); // clients beyond the slots waited; none was refused
    }

    private string EdgeConfig(Uri silo, string edgeId, string serverUser) => $"""
        users:
          - name: app
            password: {PostgresServer.Password}
        databases:
          - name: app
            primary: 127.0.0.1:{Server.Port}
            serverUser: {serverUser}
            serverPassword: {PostgresServer.Password}
        pool: {"{"} size: 4, waitTimeoutMs: 30000 {"}"}
        policy:
          silos: [{silo}]
          edgeId: {edgeId}
        """;

    private static PgPool? Pool(EdgeServer edge) => edge.Get<PgPoolRegistry>().All.SingleOrDefault();

    private static async Task RunClientAsync(EdgeServer edge, CancellationToken cancellationToken)
    {
        await using var connection = await edge.OpenAsync();
        while (!cancellationToken.IsCancellationRequested)
            await new NpgsqlCommand("SELECT pg_sleep(0.02)", connection).ExecuteNonQueryAsync(CancellationToken.None);
    }
}
