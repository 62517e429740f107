using System.Globalization;
using MProxy.Edge.Protocols.MySql;
using MProxy.TestSupport;
using MySql.Data.MySqlClient;

namespace MProxy.Integration.Tests.MySql;

/// <summary>Transaction pooling, pool exhaustion, session state pinned or reset, prepared statements across pooled connections.</summary>
[Collection(MariaDbCollection.Name)]
public sealed class MySqlPoolingTests(MariaDbFixture fixture)
{
    private MariaDbServer Server => fixture.Server;

    private const string UserVariables = "Allow User Variables=true";

    private static long Long(object? value) => Convert.ToInt64(value, CultureInfo.InvariantCulture);

    [Fact]
    public async Task TransactionMode_ManyClients_ShareFewServerConnections()
    {
        await using var edge = await MySqlEdgeServer.StartAsync(MySqlEdgeServer.AppConfig(Server, poolSize: 3, waitTimeoutMs: 10_000));
        var clients = new List<MySqlConnection>();
        for (var i = 0; i < 20; i++)
            clients.Add(await MariaDbFixture.OpenAsync(edge.Port));
        try
        {
            var tasks = clients.Select(async c =>
            {
                var seen = new List<long>();
                for (var i = 0; i < 10; i++)
                    seen.Add(Long(await MariaDbFixture.ScalarAsync(c, "SELECT CONNECTION_ID()")));
                return seen;
            });
            var ids = new HashSet<long>();
            foreach (var seen in await Task.WhenAll(tasks))
                ids.UnionWith(seen);
            Assert.InRange(ids.Count, 1, 3);
            Assert.All(edge.Get<MySqlPoolRegistry>().All, p => Assert.True(p.Connections.GetStats().Total <= 3));
        }
        finally
        {
            foreach (var c in clients)
                await c.DisposeAsync();
        }
    }

    [Fact]
    public async Task Transaction_KeepsOneServerConnection_WhileOthersChurn()
    {
        await using var edge = await MySqlEdgeServer.StartAsync(MySqlEdgeServer.AppConfig(Server, poolSize: 2));
        await using var busy = await MariaDbFixture.OpenAsync(edge.Port);
        await using var connection = await MariaDbFixture.OpenAsync(edge.Port);
        await using var tx = await connection.BeginTransactionAsync();
        var id = await MariaDbFixture.ScalarAsync(connection, "SELECT CONNECTION_ID()", tx);
        for (var i = 0; i < 10; i++)
        {
            await MariaDbFixture.ScalarAsync(busy, "SELECT 1");
            Assert.Equal(id, await MariaDbFixture.ScalarAsync(connection, "SELECT CONNECTION_ID()", tx));
        }
        await tx.CommitAsync();
    }

    [Fact]
    public async Task PoolFull_WaiterTimesOut_With1040NamingPoolAndWait()
    {
        await using var edge = await MySqlEdgeServer.StartAsync(MySqlEdgeServer.AppConfig(Server, poolSize: 1, waitTimeoutMs: 300));
        await using var holder = await MariaDbFixture.OpenAsync(edge.Port);
        await using var waiter = await MariaDbFixture.OpenAsync(edge.Port);
        await using var tx = await holder.BeginTransactionAsync();
        await MariaDbFixture.ScalarAsync(holder, "SELECT 1", tx);

        var error = await Assert.ThrowsAsync<MySqlException>(() => MariaDbFixture.ScalarAsync(waiter, "SELECT 1"));
        Assert.Equal(1040, error.Number);
        Assert.StartsWith("mproxy:", error.Message);
        Assert.Contains("app/app", error.Message);
        Assert.Contains("1 of 1", error.Message);
        Assert.Contains("[53300]", error.Message);

        // The refused client keeps its connection and is served once the pool frees up.
        await tx.CommitAsync();
        Assert.Equal(1L, Long(await MariaDbFixture.ScalarAsync(waiter, "SELECT 1")));
    }

    [Fact]
    public async Task UserVariable_PinsTheClient_AcrossOtherClientsTraffic()
    {
        await using var edge = await MySqlEdgeServer.StartAsync(MySqlEdgeServer.AppConfig(Server, poolSize: 2));
        await using var pinned = await MariaDbFixture.OpenAsync(edge.Port, extra: UserVariables);
        await MariaDbFixture.ScalarAsync(pinned, "SET @x = 41");
        await MariaDbFixture.ScalarAsync(pinned, "CREATE TEMPORARY TABLE tmp_pin (a INT)");
        await using var other = await MariaDbFixture.OpenAsync(edge.Port, extra: UserVariables);
        for (var i = 0; i < 5; i++)
            Assert.Null(await MariaDbFixture.ScalarAsync(other, "SELECT @x"));
        Assert.Equal(42L, Long(await MariaDbFixture.ScalarAsync(pinned, "SELECT @x + 1")));
        Assert.Equal(0L, Long(await MariaDbFixture.ScalarAsync(pinned, "SELECT COUNT(*) FROM tmp_pin")));
    }

    [Fact]
    public async Task SessionState_IsReset_WhenThePinnedClientLeaves()
    {
        await using var edge = await MySqlEdgeServer.StartAsync(MySqlEdgeServer.AppConfig(Server, poolSize: 1));
        long serverId;
        await using (var first = await MariaDbFixture.OpenAsync(edge.Port, extra: UserVariables))
        {
            await MariaDbFixture.ScalarAsync(first, "SET @leak = 'secret'");
            await MariaDbFixture.ScalarAsync(first, "SELECT GET_LOCK('mproxy_test_lock', 0)");
            serverId = Long(await MariaDbFixture.ScalarAsync(first, "SELECT CONNECTION_ID()"));
        }
        await using var second = await MariaDbFixture.OpenAsync(edge.Port, extra: UserVariables);
        Assert.Equal(serverId, Long(await MariaDbFixture.ScalarAsync(second, "SELECT CONNECTION_ID()")));
        Assert.Null(await MariaDbFixture.ScalarAsync(second, "SELECT @leak"));
        Assert.Equal(1L, Long(await MariaDbFixture.ScalarAsync(second, "SELECT IS_FREE_LOCK('mproxy_test_lock')")));
    }

    [Fact]
    public async Task TrackedCharacterSet_DoesNotPin_AndFollowsTheClientToAnotherConnection()
    {
        await using var edge = await MySqlEdgeServer.StartAsync(MySqlEdgeServer.AppConfig(Server, poolSize: 2));
        await using var client = await MariaDbFixture.OpenAsync(edge.Port);
        await MariaDbFixture.ScalarAsync(client, "SET time_zone = '+05:00'");
        // Another client holds the connection the first one used, in a transaction.
        await using var holder = await MariaDbFixture.OpenAsync(edge.Port);
        await using var tx = await holder.BeginTransactionAsync();
        var held = await MariaDbFixture.ScalarAsync(holder, "SELECT CONNECTION_ID()", tx);
        var id = await MariaDbFixture.ScalarAsync(client, "SELECT CONNECTION_ID()");
        Assert.NotEqual(held, id);
        Assert.Equal("+05:00", await MariaDbFixture.ScalarAsync(client, "SELECT CONVERT(@@time_zone USING utf8mb4)"));
        // ...while the holder's connection keeps the server's default.
        Assert.Equal("SYSTEM", await MariaDbFixture.ScalarAsync(holder, "SELECT CONVERT(@@time_zone USING utf8mb4)", tx));
        await tx.CommitAsync();
    }

    [Fact]
    public async Task PreparedStatements_ManyClientsFewConnections_ExecuteCorrectly()
    {
        await fixture.Server.ExecuteAsync("CREATE TABLE IF NOT EXISTS ps_test (id INT PRIMARY KEY, v VARCHAR(50)) ENGINE=InnoDB; REPLACE INTO ps_test VALUES (1, 'one'), (2, 'two'), (3, 'three');", MariaDbServer.AppDatabase);
        await using var edge = await MySqlEdgeServer.StartAsync(MySqlEdgeServer.AppConfig(Server, poolSize: 2, waitTimeoutMs: 10_000));
        var tasks = Enumerable.Range(0, 8).Select(async n =>
        {
            await using var connection = await MariaDbFixture.OpenAsync(edge.Port);
            await using var add = new MySqlCommand("SELECT ? + ?", connection);
            add.Parameters.AddWithValue("a", n);
            add.Parameters.AddWithValue("b", 0);
            await add.PrepareAsync();
            await using var lookup = new MySqlCommand("SELECT CONVERT(v USING utf8mb4) FROM ps_test WHERE id = ?", connection);
            lookup.Parameters.AddWithValue("id", 1);
            await lookup.PrepareAsync();
            for (var i = 0; i < 20; i++)
            {
                add.Parameters[1].Value = i;
                Assert.Equal(n + i, Long(await add.ExecuteScalarAsync()));
                lookup.Parameters[0].Value = i % 3 + 1;
                Assert.Equal(new[] { "one", "two", "three" }[i % 3], await lookup.ExecuteScalarAsync());
            }
        });
        await Task.WhenAll(tasks);
        Assert.All(edge.Get<MySqlPoolRegistry>().All, p => Assert.True(p.Connections.GetStats().Total <= 2));
    }

    [Fact]
    public async Task PreparedStatement_ExecutedOnAnotherConnection_IsPreparedThereTransparently()
    {
        await using var edge = await MySqlEdgeServer.StartAsync(MySqlEdgeServer.AppConfig(Server, poolSize: 2));
        await using var client = await MariaDbFixture.OpenAsync(edge.Port);
        await using var command = new MySqlCommand("SELECT CONNECTION_ID() + ?", client);
        command.Parameters.AddWithValue("zero", 0);
        await command.PrepareAsync();
        var first = Long(await command.ExecuteScalarAsync());
        // Another client takes that connection (the most recently idle one) in a transaction.
        await using var holder = await MariaDbFixture.OpenAsync(edge.Port);
        await using var tx = await holder.BeginTransactionAsync();
        Assert.Equal(first, Long(await MariaDbFixture.ScalarAsync(holder, "SELECT CONNECTION_ID()", tx)));
        var second = Long(await command.ExecuteScalarAsync());
        Assert.NotEqual(first, second);
        await tx.CommitAsync();
    }

    [Fact]
    public async Task UnknownStatementId_IsRefusedWithUnknownHandler()
    {
        await using var edge = await MySqlEdgeServer.StartAsync(MySqlEdgeServer.AppConfig(Server));
        var (client, answer) = await MySqlRawClient.LoginAsync(edge.Port, MariaDbServer.AppUser, MariaDbServer.Password, MariaDbServer.AppDatabase);
        await using var _ = client;
        Assert.True(answer.IsOk);
        await client.SendCommandAsync(0x17, [99, 0, 0, 0, 0, 1, 0, 0, 0]);
        var error = await client.ReadAsync();
        Assert.Equal(1243, error.ErrorCode);
        Assert.StartsWith("mproxy:", error.ErrorMessage);
        Assert.Equal(1, error.Sequence);
    }

    [Fact]
    public async Task SessionMode_KeepsOneConnectionPerClient_AndResetsItWhenTheClientLeaves()
    {
        await using var edge = await MySqlEdgeServer.StartAsync(MySqlEdgeServer.AppConfig(Server, poolMode: "session", poolSize: 1, waitTimeoutMs: 300));
        long first;
        await using (var client = await MariaDbFixture.OpenAsync(edge.Port, extra: UserVariables))
        {
            first = Long(await MariaDbFixture.ScalarAsync(client, "SELECT CONNECTION_ID()"));
            await MariaDbFixture.ScalarAsync(client, "SET @s = 'mine'");
            await using var other = new MySqlConnection(MariaDbFixture.ConnectionString(edge.Port));
            var error = await Assert.ThrowsAsync<MySqlException>(() => other.OpenAsync());
            Assert.Contains("[53300]", error.Message);
            Assert.Equal("mine", await MariaDbFixture.ScalarAsync(client, "SELECT CONVERT(@s USING utf8mb4)"));
        }
        await using var next = await MariaDbFixture.OpenAsync(edge.Port, extra: UserVariables);
        Assert.Equal(first, Long(await MariaDbFixture.ScalarAsync(next, "SELECT CONNECTION_ID()")));
        Assert.Null(await MariaDbFixture.ScalarAsync(next, "SELECT @s"));
    }
}
