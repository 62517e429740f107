using System.Diagnostics;
using MProxy.Edge.Admin;
using MProxy.Edge.Protocols.MySql;
using MProxy.Edge.Telemetry;
using MProxy.Integration.Tests.Policy;
using MProxy.TestSupport;
using MySql.Data.MySqlClient;

namespace MProxy.Integration.Tests.MySql;

/// <summary>MySQL pools and clients are seen (metrics, SHOW POOLS, SHOW SERVERS, SHOW CLIENTS) and capped (the policy tier's connection slots) like PostgreSQL's.</summary>
[Collection(MariaDbCollection.Name)]
public sealed class MySqlPoolInventoryTests(MariaDbFixture fixture)
{
    private static CancellationToken Token => TestContext.Current.CancellationToken;

    [Fact]
    public async Task PoolsServersAndClients_InMetricsAndAdminConsole_WithTheirProtocol()
    {
        await using var edge = await MySqlEdgeServer.StartAsync(MySqlEdgeServer.AppConfig(fixture.Server, poolSize: 3));
        await using var connection = await MariaDbFixture.OpenAsync(edge.Port);
        await using var transaction = await connection.BeginTransactionAsync(Token);
        Assert.Equal(1L, Convert.ToInt64(await MariaDbFixture.ScalarAsync(connection, "SELECT 1", transaction)));

        var scrape = PrometheusScrape.Parse(edge.Get<PrometheusExporter>().Scrape());
        (string, string)[] pool = [("database", MariaDbServer.AppDatabase), ("user", MariaDbServer.AppUser)];
        Assert.Equal(1, scrape.Value("mproxy_pool_connections", [.. pool, ("state", "active")]));
        Assert.Equal(3, scrape.Value("mproxy_pool_size", pool));

        var admin = edge.Get<AdminConsole>();
        var pools = admin.Execute("SHOW POOLS", new AdminCaller(0, "test")).Result!;
        var row = Assert.Single(pools.Rows, r => r[Column(pools, "database")] == MariaDbServer.AppDatabase);
        Assert.Equal("mysql", row[Column(pools, "protocol")]);
        Assert.Equal("1", row[Column(pools, "sv_active")]);
        Assert.Equal("3", row[Column(pools, "pool_size")]);
        Assert.Equal($"127.0.0.1:{fixture.Server.Port}", row[Column(pools, "host")]);

        var servers = admin.Execute("SHOW SERVERS", new AdminCaller(0, "test")).Result!;
        var server = Assert.Single(servers.Rows, r => r[Column(servers, "state")] == "active");
        Assert.Equal("mysql", server[Column(servers, "protocol")]);
        Assert.Equal("in-transaction", server[Column(servers, "transaction")]);
        var clientId = connection.ServerThread.ToString(System.Globalization.CultureInfo.InvariantCulture);
        Assert.Equal(clientId, server[Column(servers, "client_id")]);

        var clients = admin.Execute("SHOW CLIENTS", new AdminCaller(0, "test")).Result!;
        var client = Assert.Single(clients.Rows, r => r[Column(clients, "protocol")] == "mysql");
        Assert.Equal(clientId, client[Column(clients, "id")]);
        Assert.Equal(MariaDbServer.AppUser, client[Column(clients, "user")]);
        Assert.Equal(MariaDbServer.AppDatabase, client[Column(clients, "database")]);
        Assert.Equal("active", client[Column(clients, "state")]);
        Assert.Equal(server[Column(servers, "id")], client[Column(clients, "server_id")]);
        Assert.StartsWith("127.0.0.1:", client[Column(clients, "addr")]);
        Assert.Null(client[Column(clients, "tls")]);

        // The connection goes back once the edge has relayed the ROLLBACK's OK: poll briefly.
        await transaction.RollbackAsync(Token);
        var waited = Stopwatch.StartNew();
        while (admin.Execute("SHOW SERVERS", new AdminCaller(0, "test")).Result!.Rows.Any(r => r[Column(servers, "state")] == "active"))
        {
            Assert.True(waited.Elapsed < TimeSpan.FromSeconds(10), "the server connection never went back to the pool after ROLLBACK");
            await Task.Delay(20, Token);
        }
        Assert.Equal("idle", Assert.Single(admin.Execute("SHOW SERVERS", new AdminCaller(0, "test")).Result!.Rows)[Column(servers, "state")]);
        var idle = Assert.Single(admin.Execute("SHOW CLIENTS", new AdminCaller(0, "test")).Result!.Rows, r => r[Column(clients, "id")] == clientId);
        Assert.Equal("idle", idle[Column(clients, "state")]);
        Assert.Null(idle[Column(clients, "server_id")]);
    }

    [Fact]
    public async Task TwoEdgesWithPoolsOfFour_UnderALimitOfFour_HoldAtMostFourServerConnectionsTogether()
    {
        var policyFile = Path.Combine(Path.GetTempPath(), $"mproxy-policy-{Guid.NewGuid():n}.yaml");
        await File.WriteAllTextAsync(policyFile, $$"""
            leasePeriodMs: 3000
            exchangeIntervalMs: 500
            edgeLivenessMs: 2000
            backends:
              - { name: {{MariaDbServer.AppDatabase}}, maxConnections: 4 }
            """, Token);
        await using var silo = await SiloProcess.StartAsync(FreePort.Next(), FreePort.Next(), "memory", policyFile, Token);
        var edges = new List<MySqlEdgeServer>();
        using var stop = new CancellationTokenSource();
        var load = new List<Task>();
        try
        {
            for (var i = 1; i <= 2; i++)
            {
                edges.Add(await MySqlEdgeServer.StartAsync(MySqlEdgeServer.AppConfig(fixture.Server, poolSize: 4, waitTimeoutMs: 30000, extra: $"""
                    policy:
                      silos: [{silo.EdgeApi}]
                      edgeId: mysql-edge-{i}
                    """)));
            }
            foreach (var edge in edges)
                for (var c = 0; c < 4; c++)
                    // MySql.Data's *Async methods block: each client gets a thread of its own, not one of the
                    // thread pool's, which the edges in this process need to connect to MariaDB (eight
                    // blocked pool threads starved a connect past its 5-s timeout once in a full run).
                    load.Add(Task.Factory.StartNew(() => RunClientAsync(edge.Port, stop.Token), Token, TaskCreationOptions.LongRunning, TaskScheduler.Default).Unwrap());

            // Both edges want four; the silo leases each two.
            var waited = Stopwatch.StartNew();
            while (!edges.All(e => Pool(e) is { } pool && pool.Connections.Settings.Size == 2))
            {
                Assert.True(waited.Elapsed < TimeSpan.FromSeconds(30), $"pools never shrank to their leased slots; silo output:\n{silo.Output}");
                await Task.Delay(100, Token);
            }
            await using var root = await MariaDbFixture.OpenAsync(fixture.Server.Port);
            var most = 0L;
            for (var i = 0; i < 20; i++)
            {
                await Task.Delay(150, Token);
                most = Math.Max(most, Convert.ToInt64(await MariaDbFixture.ScalarAsync(root,
                    $"SELECT count(*) FROM information_schema.processlist WHERE user = '{MariaDbServer.AppUser}' AND id <> CONNECTION_ID()")));
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

    [Fact]
    public async Task Reload_ReachesMySqlPools_NewSizeInForce_ClientKeepsItsConnection()
    {
        string Body(int size) => MySqlEdgeServer.AppConfig(fixture.Server, poolSize: size, extra: "reload: { watchFile: false }");
        await using var edge = await Observability.ObservedEdge.StartAsync(Body(4), mySqlListener: true);
        await using var connection = await MariaDbFixture.OpenAsync(edge.MySqlPort!.Value);
        Assert.Equal(1L, Convert.ToInt64(await MariaDbFixture.ScalarAsync(connection, "SELECT 1")));
        var registry = edge.Get<MySqlPoolRegistry>();
        var pool = Assert.Single(registry.All, p => p.Database.Name == MariaDbServer.AppDatabase);
        Assert.Equal(4, pool.Connections.Settings.Size);

        await edge.RewriteAsync(Body(2));
        Assert.True(edge.Get<MProxy.Edge.Hosting.ConfigReloader>().Reload("test").Applied);

        Assert.Same(pool, Assert.Single(registry.All, p => p.Database.Name == MariaDbServer.AppDatabase));
        Assert.Equal(2, pool.Connections.Settings.Size);
        Assert.Equal(2L, Convert.ToInt64(await MariaDbFixture.ScalarAsync(connection, "SELECT 2")));
    }

    private static int Column(AdminResultSet result, string name) => result.Columns.ToList().IndexOf(name);

    private static MySqlPool? Pool(MySqlEdgeServer edge) =>
        edge.Get<MySqlPoolRegistry>().All.SingleOrDefault(p => p.Database.Name == MariaDbServer.AppDatabase);

    private static async Task RunClientAsync(int port, CancellationToken cancellationToken)
    {
        await using var connection = await MariaDbFixture.OpenAsync(port);
        while (!cancellationToken.IsCancellationRequested)
        {
            await using var command = new MySqlCommand("SELECT SLEEP(0.02)", connection);
            await command.ExecuteScalarAsync(CancellationToken.None);
        }
    }
}
