using System.Diagnostics;
using MProxy.Edge.Pooling;
using MProxy.Edge.Protocols.Postgres;
using MProxy.TestSupport;
using Npgsql;

namespace MProxy.Integration.Tests.Postgres;

/// <summary>Transaction and session pooling, pool exhaustion, disconnects mid-transaction, cancel.</summary>
public class PoolingTests(PostgresFixture postgres)
{
    private PostgresServer Server => postgres.Server;

    /// <summary>The edge's <c>network:</c> section (the default here; <see cref="PoolingTestsOnSockets"/> runs the same tests on the runtime's sockets).</summary>
    protected virtual string Network => "";

    /// <summary>Appended to the names of the tables this class writes, so that it and its twin on the other transport never share one.</summary>
    protected virtual string Suffix => "";

    private Task<EdgeServer> StartEdgeAsync(string yaml) => EdgeServer.StartAsync(yaml + "\n" + Network);

    [Fact]
    public async Task TransactionMode_ManyClients_ShareFewServerConnections()
    {
        await using var edge = await StartEdgeAsync(EdgeServer.AppConfig(Server, poolSize: 3, waitTimeoutMs: 10_000));
        var clients = new List<NpgsqlConnection>();
        for (var i = 0; i < 30; i++)
            clients.Add(await edge.OpenAsync());
        try
        {
            var pids = new HashSet<int>();
            var tasks = clients.Select(async c =>
            {
                var seen = new List<int>();
                for (var i = 0; i < 10; i++)
                    seen.Add((int)(await new NpgsqlCommand("SELECT pg_backend_pid()", c).ExecuteScalarAsync())!);
                return seen;
            });
            foreach (var seen in await Task.WhenAll(tasks))
                pids.UnionWith(seen);
            Assert.InRange(pids.Count, 1, 3);
            var pool = Assert.Single(edge.Get<PgPoolRegistry>().All);
            Assert.True(pool.Connections.GetStats().Total <= 3);
        }
        finally
        {
            foreach (var c in clients)
                await c.DisposeAsync();
        }
    }

    /// <summary>
    /// Client connections come and go by the hundred, each reading back its own query's answer —
    /// large enough to grow the buffers — while others close: a finished session's transport buffers
    /// go back to the pool (and are rented by the next connections), and no client ever sees another's bytes.
    /// </summary>
    [Fact]
    public async Task TransactionMode_ShortLivedConnections_EachGetsItsOwnAnswers()
    {
        await using var edge = await StartEdgeAsync(EdgeServer.AppConfig(Server, poolSize: 4, waitTimeoutMs: 10_000));
        var workers = Enumerable.Range(0, 8).Select(async worker =>
        {
            for (var i = 0; i < 30; i++)
            {
                var tag = $"w{worker}c{i}";
                await using var connection = await edge.OpenAsync();
                var answer = (string)(await new NpgsqlCommand($"SELECT '{tag}' || repeat('{tag}', 4000)", connection).ExecuteScalarAsync())!;
                Assert.Equal(string.Concat(Enumerable.Repeat(tag, 4001)), answer);
                Assert.Equal(tag, (string)(await new NpgsqlCommand($"SELECT '{tag}'", connection).ExecuteScalarAsync())!);
            }
        });
        await Task.WhenAll(workers);
    }

    [Fact]
    public async Task TransactionMode_TransactionKeepsOneServerConnection()
    {
        await using var edge = await StartEdgeAsync(EdgeServer.AppConfig(Server, poolSize: 3));
        await using var busy1 = await edge.OpenAsync();
        await using var busy2 = await edge.OpenAsync();
        await using var connection = await edge.OpenAsync();
        await using var tx = await connection.BeginTransactionAsync();
        var pid = await new NpgsqlCommand("SELECT pg_backend_pid()", connection, tx).ExecuteScalarAsync();
        // Other clients churn through the pool meanwhile.
        for (var i = 0; i < 20; i++)
        {
            await new NpgsqlCommand("SELECT 1", busy1).ExecuteScalarAsync();
            await new NpgsqlCommand("SELECT 1", busy2).ExecuteScalarAsync();
            Assert.Equal(pid, await new NpgsqlCommand("SELECT pg_backend_pid()", connection, tx).ExecuteScalarAsync());
        }
        await tx.CommitAsync();
    }

    [Fact]
    public async Task PoolFull_WaiterTimesOut_With53300NamingPoolSizeAndWait()
    {
        await using var edge = await StartEdgeAsync(EdgeServer.AppConfig(Server, poolSize: 1, waitTimeoutMs: 300));
        await using var holder = await edge.OpenAsync();
        await using var tx = await holder.BeginTransactionAsync();
        await new NpgsqlCommand("SELECT 1", holder, tx).ExecuteScalarAsync();

        await using var waiter = await edge.OpenAsync();
        var error = await Assert.ThrowsAsync<PostgresException>(() => new NpgsqlCommand("SELECT 1", waiter).ExecuteScalarAsync());
        Assert.Equal("53300", error.SqlState);
        Assert.StartsWith("mproxy:", error.MessageText);
        Assert.Contains("app/app", error.MessageText);
        Assert.Contains("1 of 1", error.MessageText);
        Assert.Contains("waited", error.MessageText);

        // Npgsql treats every class-53 error as fatal and drops its connection; the edge does not:
        // a client that keeps its connection after the refusal gets served once the pool frees up.
        var (raw, _) = await RawPgClient.LoginAsync(edge.Port, PostgresServer.AppUser, PostgresServer.AppDatabase, PostgresServer.Password);
        await using var _ = raw;
        await raw.SendQueryAsync("SELECT 1");
        var refused = await raw.ReadUntilReadyAsync();
        Assert.Equal("53300", refused[0].SqlState);
        Assert.Equal('Z', refused[^1].Code);
        await tx.CommitAsync();
        await raw.SendQueryAsync("SELECT 1");
        var served = await raw.ReadUntilReadyAsync();
        Assert.Contains(served, m => m.Code == 'D');
        Assert.DoesNotContain(served, m => m.Code == 'E');
    }

    [Fact]
    public async Task PoolFull_Waiters_AreServedInArrivalOrder()
    {
        await Server.ExecuteAsync("DROP SEQUENCE IF EXISTS fifo_seq; CREATE SEQUENCE fifo_seq; GRANT ALL ON fifo_seq TO app;", PostgresServer.AppDatabase);
        await using var edge = await StartEdgeAsync(EdgeServer.AppConfig(Server, poolSize: 1, waitTimeoutMs: 20_000));
        await using var holder = await edge.OpenAsync();
        var tx = await holder.BeginTransactionAsync();
        await new NpgsqlCommand("SELECT 1", holder, tx).ExecuteScalarAsync();
        var pool = Assert.Single(edge.Get<PgPoolRegistry>().All);

        var waiters = new List<Task<long>>();
        var connections = new List<NpgsqlConnection>();
        for (var i = 0; i < 4; i++)
        {
            var c = await edge.OpenAsync();
            connections.Add(c);
            // The sequence numbers the waiters in the order the server ran them.
            waiters.Add(Task.Run(async () => (long)(await new NpgsqlCommand("SELECT nextval('fifo_seq')", c).ExecuteScalarAsync())!));
            // Wait until this client is queued before the next one arrives, and longer than the
            // window within which the pool counts arrivals as simultaneous (and may serve a client on
            // the returned connection's event loop first).
            await WaitUntilAsync(() => pool.Connections.GetStats().Waiting == i + 1);
            await Task.Delay(ServerPool<PgServerConnection>.AffinityWindow * 2);
        }
        await tx.CommitAsync();
        var served = await Task.WhenAll(waiters);
        Assert.Equal(new long[] { 1, 2, 3, 4 }, served);
        foreach (var c in connections)
            await c.DisposeAsync();
    }

    [Fact]
    public async Task ClientDisconnectsMidTransaction_TransactionRolledBack_ConnectionReusedClean()
    {
        await Server.ExecuteAsync($"CREATE TABLE IF NOT EXISTS disconnect_test{Suffix} (id int); GRANT ALL ON disconnect_test{Suffix} TO app;", PostgresServer.AppDatabase);
        await using var edge = await StartEdgeAsync(EdgeServer.AppConfig(Server, poolSize: 1, waitTimeoutMs: 10_000));
        var (leaver, _) = await RawPgClient.LoginAsync(edge.Port, PostgresServer.AppUser, PostgresServer.AppDatabase, PostgresServer.Password);
        await leaver.SendQueryAsync($"BEGIN; INSERT INTO disconnect_test{Suffix} VALUES (42); SELECT pg_backend_pid();");
        var replies = await leaver.ReadUntilReadyAsync();
        Assert.Equal((byte)'T', replies[^1].Payload[0]); // ReadyForQuery: in a transaction
        var pid = int.Parse(System.Text.Encoding.ASCII.GetString(replies.First(m => m.Code == 'D').Payload.AsSpan(6)), System.Globalization.CultureInfo.InvariantCulture);
        // Drop the socket without a Terminate message, like a crashed client.
        leaver.Kill();

        await using var next = await edge.OpenAsync();
        Assert.Equal(pid, await new NpgsqlCommand("SELECT pg_backend_pid()", next).ExecuteScalarAsync());
        Assert.Equal(0L, await new NpgsqlCommand($"SELECT count(*) FROM disconnect_test{Suffix} WHERE id = 42", next).ExecuteScalarAsync());
        // No transaction left open on the reused connection (the leaver's had an id: it wrote). Not a
        // count of idle-in-transaction sessions of the user: the tests running in parallel open their own.
        Assert.Equal(DBNull.Value, await new NpgsqlCommand("SELECT pg_current_xact_id_if_assigned()", next).ExecuteScalarAsync());
    }

    [Fact]
    public async Task ClientDisconnectsDuringRunningQuery_ServerConnectionDiscarded_OthersUnaffected()
    {
        await using var edge = await StartEdgeAsync(EdgeServer.AppConfig(Server, poolSize: 2, waitTimeoutMs: 10_000));
        var (leaver, _) = await RawPgClient.LoginAsync(edge.Port, PostgresServer.AppUser, PostgresServer.AppDatabase, PostgresServer.Password);
        await leaver.SendQueryAsync("SELECT pg_sleep(30) /* leaver */");
        await WaitUntilAsync(async () => (long)(await Server.ScalarAsync("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(30) /* leaver */%' AND state = 'active'"))! == 1);
        var pid = (int)(await Server.ScalarAsync("SELECT pid FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(30) /* leaver */%'"))!;
        leaver.Kill();

        // The running query is cancelled and its server connection closed, not reused.
        await WaitUntilAsync(async () => (long)(await Server.ScalarAsync($"SELECT count(*) FROM pg_stat_activity WHERE pid = {pid}"))! == 0);
        await using var other = await edge.OpenAsync();
        Assert.NotEqual(pid, await new NpgsqlCommand("SELECT pg_backend_pid()", other).ExecuteScalarAsync());
    }

    [Fact]
    public async Task Cancel_RunningQuery_IsCancelledWith57014_AndConnectionStaysUsable()
    {
        await using var edge = await StartEdgeAsync(EdgeServer.AppConfig(Server, poolSize: 2));
        await using var connection = await edge.OpenAsync();
        await using var command = new NpgsqlCommand("SELECT pg_sleep(30)", connection);
        var running = command.ExecuteScalarAsync();
        await WaitUntilAsync(async () => (long)(await Server.ScalarAsync("SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)' AND state = 'active'"))! >= 1);
        var stopwatch = Stopwatch.StartNew();
        command.Cancel();
        var error = await Assert.ThrowsAnyAsync<Exception>(() => running);
        var postgresError = error as PostgresException ?? error.InnerException as PostgresException;
        Assert.NotNull(postgresError);
        Assert.Equal("57014", postgresError.SqlState);
        Assert.Equal(1, await new NpgsqlCommand("SELECT 1", connection).ExecuteScalarAsync());
    }

    [Fact]
    public async Task Cancel_ForIdleClient_DoesNothing()
    {
        await using var edge = await StartEdgeAsync(EdgeServer.AppConfig(Server, poolSize: 1));
        await using var idle = await edge.OpenAsync();
        await using var other = await edge.OpenAsync();
        await using var tx = await other.BeginTransactionAsync();
        // The idle client's cancel must not reach the server connection now serving another client.
        await idle.CloseAsync();
        await using var idle2 = await edge.OpenAsync();
        var running = new NpgsqlCommand("SELECT 'done' FROM pg_sleep(0.5)", other, tx).ExecuteScalarAsync();
        new NpgsqlCommand("SELECT 1", idle2).Cancel();
        Assert.Equal("done", await running);
        await tx.CommitAsync();
    }

    [Fact]
    public async Task SessionMode_SessionStateKeptForClient_AndResetForNextClient()
    {
        await using var edge = await StartEdgeAsync(EdgeServer.AppConfig(Server, poolMode: "session", poolSize: 1, waitTimeoutMs: 10_000));
        int pid;
        await using (var first = await edge.OpenAsync())
        {
            await new NpgsqlCommand("SET work_mem = '77MB'", first).ExecuteNonQueryAsync();
            await new NpgsqlCommand("PREPARE sess_stmt AS SELECT 1", first).ExecuteNonQueryAsync();
            await new NpgsqlCommand("CREATE TEMP TABLE sess_tmp (id int)", first).ExecuteNonQueryAsync();
            Assert.Equal("77MB", await new NpgsqlCommand("SHOW work_mem", first).ExecuteScalarAsync());
            pid = (int)(await new NpgsqlCommand("SELECT pg_backend_pid()", first).ExecuteScalarAsync())!;
        }
        await using var second = await edge.OpenAsync();
        Assert.Equal(pid, await new NpgsqlCommand("SELECT pg_backend_pid()", second).ExecuteScalarAsync());
        Assert.NotEqual("77MB", await new NpgsqlCommand("SHOW work_mem", second).ExecuteScalarAsync());
        Assert.Equal(0L, await new NpgsqlCommand("SELECT count(*) FROM pg_prepared_statements", second).ExecuteScalarAsync());
        Assert.Equal(0L, await new NpgsqlCommand("SELECT count(*) FROM pg_class WHERE relname = 'sess_tmp'", second).ExecuteScalarAsync());
    }

    [Fact]
    public async Task SessionMode_ClientHoldsItsServerConnection_OthersWait()
    {
        await using var edge = await StartEdgeAsync(EdgeServer.AppConfig(Server, poolMode: "session", poolSize: 1, waitTimeoutMs: 300));
        await using var first = await edge.OpenAsync();
        await new NpgsqlCommand("SELECT 1", first).ExecuteScalarAsync();
        await using var second = await edge.OpenAsync();
        var error = await Assert.ThrowsAsync<PostgresException>(() => new NpgsqlCommand("SELECT 1", second).ExecuteScalarAsync());
        Assert.Equal("53300", error.SqlState);
    }

    [Fact]
    public async Task TransactionMode_TrackedParameters_FollowTheClientAcrossServerConnections()
    {
        await using var edge = await StartEdgeAsync(EdgeServer.AppConfig(Server, poolSize: 2, waitTimeoutMs: 10_000));
        await using var tokyo = await edge.OpenAsync();
        await using var other = await edge.OpenAsync();
        await new NpgsqlCommand("SET TimeZone = 'Asia/Tokyo'", tokyo).ExecuteNonQueryAsync();
        await new NpgsqlCommand("SET application_name = 'tokyo-app'", tokyo).ExecuteNonQueryAsync();
        for (var i = 0; i < 10; i++)
        {
            // Interleave so that the two clients swap server connections.
            await using var tx = await other.BeginTransactionAsync();
            Assert.Equal("Asia/Tokyo", await new NpgsqlCommand("SHOW TimeZone", tokyo).ExecuteScalarAsync());
            Assert.Equal("tokyo-app", await new NpgsqlCommand("SELECT current_setting('application_name')", tokyo).ExecuteScalarAsync());
            Assert.NotEqual("Asia/Tokyo", await new NpgsqlCommand("SHOW TimeZone", other, tx).ExecuteScalarAsync());
            await tx.CommitAsync();
            Assert.NotEqual("tokyo-app", await new NpgsqlCommand("SELECT current_setting('application_name')", other).ExecuteScalarAsync());
        }
    }

    [Fact]
    public async Task StartupOptions_SearchPath_AppliesToThisClientOnly()
    {
        await Server.ExecuteAsync("CREATE SCHEMA IF NOT EXISTS other_schema AUTHORIZATION app;", PostgresServer.AppDatabase);
        await using var edge = await StartEdgeAsync(EdgeServer.AppConfig(Server, poolSize: 1, waitTimeoutMs: 10_000));
        var builder = new NpgsqlConnectionStringBuilder(edge.ConnectionString()) { SearchPath = "other_schema" };
        await using var withPath = new NpgsqlConnection(builder.ConnectionString);
        await withPath.OpenAsync();
        await using var plain = await edge.OpenAsync();
        for (var i = 0; i < 3; i++)
        {
            Assert.Equal("other_schema", await new NpgsqlCommand("SELECT current_schema()", withPath).ExecuteScalarAsync());
            Assert.Equal("public", await new NpgsqlCommand("SELECT current_schema()", plain).ExecuteScalarAsync());
        }
    }

    [Fact]
    public async Task SessionMode_Notify_ReachesListeningClient()
    {
        await using var edge = await StartEdgeAsync(EdgeServer.AppConfig(Server, poolMode: "session", poolSize: 2));
        await using var listener = await edge.OpenAsync();
        var received = new TaskCompletionSource<string>();
        listener.Notification += (_, e) => received.TrySetResult(e.Payload);
        await new NpgsqlCommand("LISTEN mproxy_channel", listener).ExecuteNonQueryAsync();
        await using var notifier = await edge.OpenAsync();
        await new NpgsqlCommand("NOTIFY mproxy_channel, 'ping'", notifier).ExecuteNonQueryAsync();
        var wait = listener.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal("ping", await received.Task.WaitAsync(TimeSpan.FromSeconds(10)));
        await wait;
    }

    internal static Task WaitUntilAsync(Func<bool> condition, int timeoutMs = 10_000) =>
        Poll.UntilAsync(condition, timeout: TimeSpan.FromMilliseconds(timeoutMs));

    internal static async Task WaitUntilAsync(Func<Task<bool>> condition, int timeoutMs = 10_000)
    {
        var stopwatch = Stopwatch.StartNew();
        while (!await condition())
        {
            if (stopwatch.ElapsedMilliseconds > timeoutMs)
                throw new TimeoutException("condition not met in time");
            await Task.Delay(10);
        }
    }
}

/// <summary><see cref="PoolingTests"/> on the runtime's socket transport.</summary>
public sealed class PoolingTestsOnSockets(PostgresFixture postgres) : PoolingTests(postgres)
{
    protected override string Network => "network: { transport: sockets }";

    protected override string Suffix => "_sockets";
}
