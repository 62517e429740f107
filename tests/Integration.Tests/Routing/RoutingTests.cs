using MProxy.Edge.Backends;
using MProxy.Edge.Protocols.Postgres;
using MProxy.Integration.Tests.Backends;
using MProxy.Integration.Tests.Postgres;
using MProxy.TestSupport;
using Npgsql;

namespace MProxy.Integration.Tests.Routing;

/// <summary>Reads to the replica, writes to the primary, read-your-writes, ejection and failover — through the edge.</summary>
public class RoutingTests : IAsyncLifetime
{
    private readonly PrimaryReplicaPair _pair = new();
    private EdgeServer _edge = null!;

    /// <summary>The edge's <c>network:</c> section (the default here; <see cref="RoutingTestsOnSockets"/> runs the same tests on the runtime's sockets).</summary>
    protected virtual string Network => "";

    public async ValueTask InitializeAsync()
    {
        await _pair.InitializeAsync();
        await _pair.Primary.ExecuteAsync("CREATE TABLE items (id int PRIMARY KEY, v text); CREATE SEQUENCE routing_seq; GRANT ALL ON items, routing_seq TO app;", PostgresServer.AppDatabase);
        _edge = await StartEdgeAsync(
            "{ size: 4, waitTimeoutMs: 20000 }",
            "breaker: { failuresToOpen: 2, cooldownMs: 200, cooldownMaxMs: 1000 }",
            "failoverWaitMs: 60000");
    }

    /// <summary>
    /// Starts an edge in front of the pair (health checks every 200 ms, no lag bound) with
    /// <paramref name="pool"/> as its <c>pool:</c> section and <paramref name="backends"/> as further
    /// lines of <c>backends:</c>, and waits until the replica serves reads.
    /// </summary>
    private async Task<EdgeServer> StartEdgeAsync(string pool, params string[] backends)
    {
        var edge = await EdgeServer.StartAsync($"""
            users:
              - name: app
                password: {PostgresServer.Password}
            pool: {pool}
            databases:
              - name: app
                serverUser: app
                serverPassword: {PostgresServer.Password}
                backends:
                  primary: 127.0.0.1:{_pair.Primary.Port}
                  replicas: [ "127.0.0.1:{_pair.Replica.Port}" ]
                  healthCheck: {"{"} intervalMs: 200, timeoutMs: 2000 {"}"}
                  maxReplicaLagMs: 0
                  {string.Join("\n      ", backends)}
            {Network}
            """);
        try
        {
            await TopologyWaiter.WaitForAsync(Assert.Single(edge.Get<PgPoolRegistry>().AllBackends).Monitor,
                t => t.ReadReplicas.Length == 1 && t.HasUsablePrimary, "the replica qualifies", TimeSpan.FromSeconds(60));
            return edge;
        }
        catch
        {
            await edge.DisposeAsync();
            throw;
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _edge.DisposeAsync();
        await _pair.DisposeAsync();
    }

    private DatabaseBackends Backends => Assert.Single(_edge.Get<PgPoolRegistry>().AllBackends);

    private Task<BackendTopology> WaitForTopologyAsync(Func<BackendTopology, bool> condition, string what) =>
        TopologyWaiter.WaitForAsync(Backends.Monitor, condition, what, TimeSpan.FromSeconds(60));

    private static async Task<(bool InRecovery, int Port)> WhereAsync(NpgsqlConnection connection, string sql = "SELECT pg_is_in_recovery(), inet_server_port()", NpgsqlTransaction? tx = null)
    {
        await using var command = new NpgsqlCommand(sql, connection, tx);
        await using var reader = await command.ExecuteReaderAsync();
        Assert.True(await reader.ReadAsync());
        return (reader.GetBoolean(0), reader.GetInt32(1));
    }

    [Fact]
    public async Task Reads_GoToTheReplica_WritesToThePrimary()
    {
        await using var connection = await _edge.OpenAsync();
        for (var i = 0; i < 5; i++)
            Assert.Equal((true, _pair.Replica.Port), await WhereAsync(connection));
        await new NpgsqlCommand("INSERT INTO items VALUES (1, 'one') ON CONFLICT DO NOTHING", connection).ExecuteNonQueryAsync();
        // A write that returns where it ran.
        Assert.Equal((false, _pair.Primary.Port), await WhereAsync(connection,
            "WITH w AS (INSERT INTO items VALUES (2, 'two') ON CONFLICT (id) DO UPDATE SET v = 'two' RETURNING 1) SELECT pg_is_in_recovery(), inet_server_port() FROM w"));
    }

    [Theory]
    [InlineData("SELECT pg_is_in_recovery(), inet_server_port() FROM items FOR UPDATE")]
    [InlineData("SELECT pg_is_in_recovery(), inet_server_port() FROM items FOR SHARE")]
    [InlineData("SELECT pg_is_in_recovery(), inet_server_port(), nextval('routing_seq')")]
    [InlineData("/* mproxy: route=primary */ SELECT pg_is_in_recovery(), inet_server_port()")]
    public async Task LockingReadsWriteFunctionsAndHints_GoToThePrimary(string sql)
    {
        await _pair.Primary.ExecuteAsync("INSERT INTO items VALUES (10, 'ten') ON CONFLICT DO NOTHING", PostgresServer.AppDatabase);
        await using var connection = await _edge.OpenAsync();
        var (inRecovery, port) = await WhereAsync(connection, sql);
        Assert.False(inRecovery);
        Assert.Equal(_pair.Primary.Port, port);
    }

    [Fact]
    public async Task Transaction_IsPinned_ToWhereItsFirstStatementWent()
    {
        await using var connection = await _edge.OpenAsync();
        await using (var tx = await connection.BeginTransactionAsync())
        {
            for (var i = 0; i < 3; i++)
                Assert.Equal((false, _pair.Primary.Port), await WhereAsync(connection, tx: tx));
            await tx.CommitAsync();
        }
        // BEGIN READ ONLY may go to a replica, and stays there.
        await using var readOnly = await connection.BeginTransactionAsync();
        await new NpgsqlCommand("SET TRANSACTION READ ONLY", connection, readOnly).ExecuteNonQueryAsync();
        var first = await WhereAsync(connection, tx: readOnly);
        for (var i = 0; i < 3; i++)
            Assert.Equal(first, await WhereAsync(connection, tx: readOnly));
        await readOnly.CommitAsync();

        var (client, _) = await RawPgClient.LoginAsync(_edge.Port, "app", "app", PostgresServer.Password);
        await using var _ = client;
        await client.SendQueryAsync("BEGIN READ ONLY");
        await client.ReadUntilReadyAsync();
        for (var i = 0; i < 3; i++)
        {
            await client.SendQueryAsync("SELECT pg_is_in_recovery()");
            var row = (await client.ReadUntilReadyAsync()).Single(m => m.Code == 'D');
            Assert.Equal((byte)'t', row.Payload[^1]);
        }
        await client.SendQueryAsync("COMMIT");
        await client.ReadUntilReadyAsync();
    }

    [Fact]
    public async Task ReadYourWrites_WhileReplicaIsPaused_ReadsOwnWriteFromThePrimary()
    {
        await using var connection = await _edge.OpenAsync();
        await _pair.Replica.ExecuteAsync("SELECT pg_wal_replay_pause()");
        try
        {
            await new NpgsqlCommand("INSERT INTO items VALUES (100, 'mine') ON CONFLICT (id) DO UPDATE SET v = 'mine'", connection).ExecuteNonQueryAsync();
            // Right after its write, this client reads its own row, wherever it reads from.
            Assert.Equal("mine", await new NpgsqlCommand("SELECT v FROM items WHERE id = 100", connection).ExecuteScalarAsync());
            Assert.Equal((false, _pair.Primary.Port), await WhereAsync(connection));
            // Another client, with no write to see, still reads from the (paused) replica.
            await using var other = await _edge.OpenAsync();
            Assert.Equal((true, _pair.Replica.Port), await WhereAsync(other));
        }
        finally
        {
            await _pair.Replica.ExecuteAsync("SELECT pg_wal_replay_resume()");
        }
        // Once the replica has replayed the write, the writer's reads go back to it.
        await PoolingTests.WaitUntilAsync(async () => (await WhereAsync(connection)).InRecovery, 30_000);
    }

    [Fact]
    public async Task StoppedReplica_IsEjected_ReadsGoToThePrimary_ThenReadmitted()
    {
        await _pair.Replica.StopProcessAsync("immediate");
        await WaitForTopologyAsync(t => t.ReadReplicas.Length == 0, "the replica is ejected");
        await using (var connection = await _edge.OpenAsync())
            Assert.Equal((false, _pair.Primary.Port), await WhereAsync(connection));

        await _pair.Replica.StartProcessAsync();
        await WaitForTopologyAsync(t => t.ReadReplicas.Length == 1, "the replica is readmitted");
        await using var again = await _edge.OpenAsync();
        Assert.Equal((true, _pair.Replica.Port), await WhereAsync(again));
    }

    [Fact]
    public async Task PrimaryDown_NewClientsStillLogIn_AndTheirWriteWaitsForItsReturn()
    {
        await using (var first = await _edge.OpenAsync())
            await new NpgsqlCommand("INSERT INTO items VALUES (600, 'first') ON CONFLICT DO NOTHING", first).ExecuteNonQueryAsync();
        // The fixture's primary commits asynchronously: make the table durable before the crash.
        await _pair.Primary.ExecuteAsync("CHECKPOINT");
        await _pair.Primary.StopProcessAsync("immediate");
        await WaitForTopologyAsync(t => !t.HasUsablePrimary, "the primary is out");
        // Losing the host closed its pools; the next client's login must not need the host
        // (it did: the recreated pool had no server parameters to greet with, and the login failed
        // with 57P03 "cannot connect to server").
        await PoolingTests.WaitUntilAsync(() => !_edge.Get<PgPoolRegistry>().All.Any(p => p.Endpoint.Port == _pair.Primary.Port), 30_000);
        await using var connection = await _edge.OpenAsync();
        var writing = WhereAsync(connection, "WITH w AS (INSERT INTO items VALUES (601, 'while down') RETURNING 1) SELECT pg_is_in_recovery(), inet_server_port() FROM w");
        await Task.Delay(500, TestContext.Current.CancellationToken);
        Assert.False(writing.IsCompleted, "the write should wait for a primary (failoverWaitMs), not fail at once");
        await _pair.Primary.StartProcessAsync();
        Assert.Equal((false, _pair.Primary.Port), await writing.WaitAsync(TimeSpan.FromSeconds(60), TestContext.Current.CancellationToken));
    }

    [Fact]
    public async Task HostPoolClosedUnderAWaitingClient_TheClientIsRoutedAgain_NotDisconnected()
    {
        // A monitor login of its own, so that the health checks can fail while the hosts serve clients.
        await _pair.Primary.ExecuteAsync($"CREATE ROLE mon LOGIN PASSWORD '{PostgresServer.Password}'; GRANT pg_monitor TO mon;");
        await PoolingTests.WaitUntilAsync(async () => await _pair.Replica.ScalarAsync("SELECT count(*) FROM pg_roles WHERE rolname = 'mon'") is 1L, 30_000);
        await using var edge = await StartEdgeAsync(
            "{ size: 1, waitTimeoutMs: 60000 }",
            $"monitor: {{ user: mon, password: {PostgresServer.Password} }}",
            "breaker: { failuresToOpen: 2, cooldownMs: 200, cooldownMaxMs: 1000 }",
            "failoverWaitMs: 60000");
        var backends = Assert.Single(edge.Get<PgPoolRegistry>().AllBackends);

        // The replica's pool has one connection: a read-only transaction holds it, the next read waits.
        await using var holder = await edge.OpenAsync();
        await new NpgsqlCommand("BEGIN READ ONLY", holder).ExecuteNonQueryAsync();
        Assert.Equal((true, _pair.Replica.Port), await WhereAsync(holder));
        await using var waiter = await edge.OpenAsync();
        var reading = WhereAsync(waiter);
        var replicaPool = edge.Get<PgPoolRegistry>().All.Single(p => p.Endpoint.Port == _pair.Replica.Port);
        await PoolingTests.WaitUntilAsync(() => replicaPool.GetStats().Waiting == 1, 30_000);

        // The health checks fail (their login is refused and their connections are cut): the breakers
        // open and the hosts' pools close, the waiting client's among them. It must be routed again —
        // waiting, within failoverWaitMs, for a usable host — not disconnected.
        await _pair.Primary.ExecuteAsync("ALTER ROLE mon NOLOGIN");
        await PoolingTests.WaitUntilAsync(async () => await _pair.Replica.ScalarAsync("SELECT rolcanlogin FROM pg_roles WHERE rolname = 'mon'") is false, 30_000);
        foreach (var server in new[] { _pair.Primary, _pair.Replica })
            await server.ExecuteAsync("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'mon'");
        await TopologyWaiter.WaitForAsync(backends.Monitor, t => t.Backends[1].Breaker == BreakerState.Open, "the replica's breaker opens", TimeSpan.FromSeconds(60));
        await PoolingTests.WaitUntilAsync(() => replicaPool.Connections.GetStats().Waiting == 0, 30_000);
        Assert.False(reading.IsCompleted && (reading.IsFaulted || reading.IsCanceled), "the waiting client was failed when its pool closed: " + reading.Exception?.GetBaseException().Message);

        await _pair.Primary.ExecuteAsync("ALTER ROLE mon LOGIN");
        var (_, port) = await reading.WaitAsync(TimeSpan.FromSeconds(60), TestContext.Current.CancellationToken);
        Assert.Contains(port, new[] { _pair.Primary.Port, _pair.Replica.Port });
    }

    [Fact]
    public async Task BackToBackTransactions_AreEachRouted_EvenWhenOneArrivesBeforeItsPredecessorsConnectionIsBack()
    {
        // The edge gives a connection back after flushing the last response to the client, so a
        // client's next statement can arrive while the connection is still attached, its unit over.
        // That statement is a new transaction: it must be routed (here: a read after a write, with
        // read-your-writes off, goes to the replica), not run on the connection it happened to find.
        await using var edge = await StartEdgeAsync("{ size: 4 }", "readYourWrites: false");
        await using var connection = await edge.OpenAsync();
        var onThePrimary = 0;
        for (var i = 0; i < 300; i++)
        {
            await new NpgsqlCommand("UPDATE items SET v = 'x' WHERE id = -1", connection).ExecuteNonQueryAsync();
            if (await WhereAsync(connection) is (false, _))
                onThePrimary++;
        }
        Assert.Equal(0, onThePrimary);
    }

    [Fact]
    public async Task PrimaryStopped_ReplicaPromoted_WritesMoveToIt()
    {
        await using var connection = await _edge.OpenAsync();
        await new NpgsqlCommand("INSERT INTO items VALUES (500, 'before') ON CONFLICT DO NOTHING", connection).ExecuteNonQueryAsync();
        // The fixture's primary commits asynchronously: let the replica have everything before the crash.
        await PoolingTests.WaitUntilAsync(async () =>
            await _pair.Replica.ScalarAsync("SELECT count(*) FROM pg_class WHERE relname = 'items'", PostgresServer.AppDatabase) is 1L
            && await _pair.Replica.ScalarAsync("SELECT count(*) FROM items WHERE id = 500", PostgresServer.AppDatabase) is 1L, 30_000);
        await _pair.Primary.StopProcessAsync("immediate");
        // A write issued during the switch waits (bounded) instead of failing at once.
        var writing = Task.Run(async () =>
        {
            await using var writer = await _edge.OpenAsync();
            return await WhereAsync(writer, "WITH w AS (INSERT INTO items VALUES (501, 'after') RETURNING 1) SELECT pg_is_in_recovery(), inet_server_port() FROM w");
        });
        await WaitForTopologyAsync(t => !t.HasUsablePrimary, "the old primary is out");
        await _pair.Replica.PromoteAsync();
        var (inRecovery, port) = await writing.WaitAsync(TimeSpan.FromSeconds(60));
        Assert.False(inRecovery);
        Assert.Equal(_pair.Replica.Port, port);
        Assert.Equal("after", await _pair.Replica.ScalarAsync("SELECT v FROM items WHERE id = 501", PostgresServer.AppDatabase));
    }
}

/// <summary><see cref="RoutingTests"/> on the runtime's sockets: failover is where a transport's handling of closed and refused connections shows.</summary>
public sealed class RoutingTestsOnSockets : RoutingTests
{
    protected override string Network => "network: { transport: sockets }";
}
