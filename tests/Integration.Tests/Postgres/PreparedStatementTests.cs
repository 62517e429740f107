using System.Globalization;
using System.Text;
using MProxy.Edge.Protocols.Postgres;
using MProxy.TestSupport;
using Npgsql;

namespace MProxy.Integration.Tests.Postgres;

/// <summary>Named prepared statements keep working whichever pooled server connection a client gets (transaction mode).</summary>
public sealed class PreparedStatementTests(PostgresFixture postgres)
{
    private PostgresServer Server => postgres.Server;

    private static Dictionary<string, string> Env => new() { ["PGPASSWORD"] = PostgresServer.Password };

    [Fact]
    public async Task ExplicitPrepare_ManyClientsFewConnections_EveryExecutionSucceeds()
    {
        await using var edge = await EdgeServer.StartAsync(EdgeServer.AppConfig(Server, poolSize: 2, waitTimeoutMs: 20_000));
        var tasks = Enumerable.Range(0, 12).Select(async client =>
        {
            await using var connection = await edge.OpenAsync();
            await using var command = new NpgsqlCommand("SELECT $1::int + $2::int, $3::text", connection);
            command.Parameters.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Integer });
            command.Parameters.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Integer });
            command.Parameters.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Text });
            await command.PrepareAsync();
            Assert.True(command.IsPrepared);
            for (var i = 0; i < 30; i++)
            {
                command.Parameters[0].Value = client;
                command.Parameters[1].Value = i;
                command.Parameters[2].Value = $"c{client}";
                await using var reader = await command.ExecuteReaderAsync();
                Assert.True(await reader.ReadAsync());
                Assert.Equal(client + i, reader.GetInt32(0));
                Assert.Equal($"c{client}", reader.GetString(1));
            }
        });
        await Task.WhenAll(tasks);
        // The server connections hold the edge's statements, not the clients' names.
        var names = await edge.OpenAsync();
        var onServer = (long)(await new NpgsqlCommand("SELECT count(*) FROM pg_prepared_statements WHERE name LIKE 'mproxy_%'", names).ExecuteScalarAsync())!;
        Assert.True(onServer >= 0);
        await names.DisposeAsync();
    }

    [Fact]
    public async Task AutoPrepare_ManyClients_StatementsSharedAndResultsRight()
    {
        await using var edge = await EdgeServer.StartAsync(EdgeServer.AppConfig(Server, poolSize: 3, waitTimeoutMs: 20_000));
        var builder = new NpgsqlConnectionStringBuilder(edge.ConnectionString()) { MaxAutoPrepare = 10, AutoPrepareMinUsages = 2 };
        var tasks = Enumerable.Range(0, 10).Select(async client =>
        {
            await using var connection = new NpgsqlConnection(builder.ConnectionString);
            await connection.OpenAsync();
            for (var i = 0; i < 40; i++)
            {
                await using var command = new NpgsqlCommand("SELECT $1::int * 10", connection) { Parameters = { new() { Value = i } } };
                Assert.Equal(i * 10, await command.ExecuteScalarAsync());
                await using var other = new NpgsqlCommand("SELECT current_database() || $1::text", connection) { Parameters = { new() { Value = "!" } } };
                Assert.Equal("app!", await other.ExecuteScalarAsync());
            }
        });
        await Task.WhenAll(tasks);
        var pool = Assert.Single(edge.Get<PgPoolRegistry>().All);
        // Ten clients auto-prepared the same two texts: the catalog shares them.
        Assert.InRange(pool.Catalog.Count, 2, 4);
    }

    [Fact]
    public async Task TwoClients_SameStatementName_DifferentQueries_StayApart()
    {
        await using var edge = await EdgeServer.StartAsync(EdgeServer.AppConfig(Server, poolSize: 1, waitTimeoutMs: 10_000));
        var (a, _) = await RawPgClient.LoginAsync(edge.Port, PostgresServer.AppUser, PostgresServer.AppDatabase, PostgresServer.Password);
        var (b, _) = await RawPgClient.LoginAsync(edge.Port, PostgresServer.AppUser, PostgresServer.AppDatabase, PostgresServer.Password);
        await using var _a = a;
        await using var _b = b;
        await a.SendAsync([.. Parse("S_1", "SELECT 'from a'"), .. Sync()]);
        Assert.Equal(['1', 'Z'], (await a.ReadUntilReadyAsync()).Select(m => m.Code));
        await b.SendAsync([.. Parse("S_1", "SELECT 'from b'"), .. Sync()]);
        Assert.Equal(['1', 'Z'], (await b.ReadUntilReadyAsync()).Select(m => m.Code));
        for (var i = 0; i < 5; i++)
        {
            Assert.Equal("from a", await ExecuteNamedAsync(a, "S_1"));
            Assert.Equal("from b", await ExecuteNamedAsync(b, "S_1"));
        }
    }

    [Fact]
    public async Task Eviction_SmallServerLimit_StatementsReprepared_ServerKeepsAtMostTheLimit()
    {
        await using var edge = await EdgeServer.StartAsync(EdgeServer.AppConfig(Server, poolSize: 1, waitTimeoutMs: 10_000, extra: "") .Replace("waitTimeoutMs: 10000", "waitTimeoutMs: 10000\n  maxPreparedStatements: 2", StringComparison.Ordinal));
        var (client, _) = await RawPgClient.LoginAsync(edge.Port, PostgresServer.AppUser, PostgresServer.AppDatabase, PostgresServer.Password);
        await using var _ = client;
        for (var s = 0; s < 5; s++)
        {
            await client.SendAsync([.. Parse($"s{s}", $"SELECT {s} AS v"), .. Sync()]);
            Assert.DoesNotContain(await client.ReadUntilReadyAsync(), m => m.Code == 'E');
        }
        for (var round = 0; round < 3; round++)
            for (var s = 0; s < 5; s++)
                Assert.Equal(s.ToString(CultureInfo.InvariantCulture), await ExecuteNamedAsync(client, $"s{s}"));
        var server = Assert.Single(edge.Get<PgPoolRegistry>().All);
        await client.SendQueryAsync("SELECT count(*) FROM pg_prepared_statements");
        var count = (await client.ReadUntilReadyAsync()).Single(m => m.Code == 'D');
        Assert.InRange(int.Parse(Encoding.ASCII.GetString(count.Payload.AsSpan(6)), CultureInfo.InvariantCulture), 1, 2);
        Assert.NotNull(server);
    }

    [Fact]
    public async Task ClientOverItsLimit_GetsAClearError_AndKeepsWorking()
    {
        await using var edge = await EdgeServer.StartAsync(EdgeServer.AppConfig(Server, poolSize: 2, extra: "clients:\n  maxPreparedStatements: 3"));
        var (client, _) = await RawPgClient.LoginAsync(edge.Port, PostgresServer.AppUser, PostgresServer.AppDatabase, PostgresServer.Password);
        await using var _ = client;
        for (var s = 0; s < 3; s++)
        {
            await client.SendAsync([.. Parse($"p{s}", $"SELECT {s}"), .. Sync()]);
            Assert.DoesNotContain(await client.ReadUntilReadyAsync(), m => m.Code == 'E');
        }
        await client.SendAsync([.. Parse("p3", "SELECT 3"), .. Sync()]);
        var refused = await client.ReadUntilReadyAsync();
        Assert.Equal("53400", refused[0].SqlState);
        Assert.Contains("clients.maxPreparedStatements", refused[0].MessageText);
        // Closing one makes room.
        await client.SendAsync([.. Close("p0"), .. Parse("p3", "SELECT 3"), .. Sync()]);
        Assert.Equal(['3', '1', 'Z'], (await client.ReadUntilReadyAsync()).Select(m => m.Code));
        Assert.Equal("3", await ExecuteNamedAsync(client, "p3"));
    }

    [Fact]
    public async Task ParseOfExistingName_And_BindOfUnknownName_GetPostgresErrors()
    {
        await using var edge = await EdgeServer.StartAsync(EdgeServer.AppConfig(Server, poolSize: 2));
        var (client, _) = await RawPgClient.LoginAsync(edge.Port, PostgresServer.AppUser, PostgresServer.AppDatabase, PostgresServer.Password);
        await using var _ = client;
        await client.SendAsync([.. Parse("dup", "SELECT 1"), .. Sync()]);
        await client.ReadUntilReadyAsync();
        await client.SendAsync([.. Parse("dup", "SELECT 2"), .. Sync()]);
        Assert.Equal("42P05", (await client.ReadUntilReadyAsync())[0].SqlState);
        await client.SendAsync([.. Bind("nope"), .. Execute(), .. Sync()]);
        var replies = await client.ReadUntilReadyAsync();
        Assert.Equal("26000", replies[0].SqlState);
        Assert.Equal('Z', replies[^1].Code);
        Assert.Equal(2, replies.Count);
    }

    [Fact]
    public async Task BadStatement_ParseErrorReachesClient_AndTheNameIsNotKept()
    {
        await using var edge = await EdgeServer.StartAsync(EdgeServer.AppConfig(Server, poolSize: 2));
        var (client, _) = await RawPgClient.LoginAsync(edge.Port, PostgresServer.AppUser, PostgresServer.AppDatabase, PostgresServer.Password);
        await using var _ = client;
        await client.SendAsync([.. Parse("bad", "SELEC 1"), .. Sync()]);
        Assert.Equal("42601", (await client.ReadUntilReadyAsync())[0].SqlState);
        // The failed name is free again.
        await client.SendAsync([.. Parse("bad", "SELECT 'fixed'"), .. Sync()]);
        Assert.Equal(['1', 'Z'], (await client.ReadUntilReadyAsync()).Select(m => m.Code));
        Assert.Equal("fixed", await ExecuteNamedAsync(client, "bad"));
    }

    [Fact]
    public async Task SchemaChange_StalePlanFailsAtMostOnce_ThenReprepared()
    {
        await Server.ExecuteAsync("DROP TABLE IF EXISTS ddl_test; CREATE TABLE ddl_test (a int); INSERT INTO ddl_test VALUES (1); GRANT ALL ON ddl_test TO app;", PostgresServer.AppDatabase);
        await using var edge = await EdgeServer.StartAsync(EdgeServer.AppConfig(Server, poolSize: 2, waitTimeoutMs: 10_000));
        var (client, _) = await RawPgClient.LoginAsync(edge.Port, PostgresServer.AppUser, PostgresServer.AppDatabase, PostgresServer.Password);
        await using var _ = client;
        await client.SendAsync([.. Parse("star", "SELECT * FROM ddl_test"), .. Sync()]);
        await client.ReadUntilReadyAsync();
        Assert.Equal("1", await ExecuteNamedAsync(client, "star"));
        await Server.ExecuteAsync("ALTER TABLE ddl_test ADD COLUMN b int DEFAULT 7", PostgresServer.AppDatabase);
        var failures = 0;
        for (var i = 0; i < 4; i++)
        {
            await client.SendAsync([.. Bind("star"), .. Execute(), .. Sync()]);
            var replies = await client.ReadUntilReadyAsync();
            if (replies.Any(m => m.Code == 'E'))
            {
                Assert.Equal("0A000", replies.First(m => m.Code == 'E').SqlState);
                failures++;
            }
            else
            {
                Assert.Equal(2, System.Buffers.Binary.BinaryPrimitives.ReadInt16BigEndian(replies.First(m => m.Code == 'D').Payload));
            }
        }
        Assert.True(failures <= 1, $"{failures} executions failed after the schema change");
    }

    [Fact]
    public async Task SqlLevelPrepare_ExecuteAndDeallocate_AcrossConnections()
    {
        await using var edge = await EdgeServer.StartAsync(EdgeServer.AppConfig(Server, poolSize: 2, waitTimeoutMs: 10_000));
        await using var connection = await edge.OpenAsync();
        await using var other = await edge.OpenAsync();
        await new NpgsqlCommand("PREPARE triple (int) AS SELECT $1 * 3", connection).ExecuteNonQueryAsync();
        for (var i = 0; i < 6; i++)
        {
            // The other client holds a connection in a transaction now and then, so this one moves around.
            await using var tx = i % 2 == 0 ? await other.BeginTransactionAsync() : null;
            Assert.Equal(i * 3, await new NpgsqlCommand($"EXECUTE triple({i})", connection).ExecuteScalarAsync());
            if (tx is not null)
                await tx.CommitAsync();
        }
        var duplicate = await Assert.ThrowsAsync<PostgresException>(() => new NpgsqlCommand("PREPARE triple AS SELECT 1", connection).ExecuteNonQueryAsync());
        Assert.Equal("42P05", duplicate.SqlState);
        await new NpgsqlCommand("DEALLOCATE triple", connection).ExecuteNonQueryAsync();
        var gone = await Assert.ThrowsAsync<PostgresException>(() => new NpgsqlCommand("EXECUTE triple(1)", connection).ExecuteScalarAsync());
        Assert.Equal("26000", gone.SqlState);
    }

    [Theory]
    [InlineData("prepared")]
    [InlineData("extended")]
    public async Task Pgbench_PreparedAndExtended_TransactionMode_NoFailedTransactions(string protocol)
    {
        var database = "prep_" + protocol;
        await Server.ExecuteAsync($"DROP DATABASE IF EXISTS {database}");
        await Server.ExecuteAsync($"CREATE DATABASE {database} OWNER app");
        await using var edge = await EdgeServer.StartAsync($"""
            users:
              - name: app
                password: {PostgresServer.Password}
            pool:
              size: 3
              waitTimeoutMs: 30000
            databases:
              - name: {database}
                primary: 127.0.0.1:{Server.Port}
            """);
        string[] connection = ["-h", "127.0.0.1", "-p", edge.Port.ToString(CultureInfo.InvariantCulture), "-U", "app"];
        var init = await ProcessRunner.RunAsync("pgbench", [.. connection, "-i", "-s", "1", "-q", database], Env, TimeSpan.FromMinutes(3));
        Assert.True(init.ExitCode == 0, init.Output);
        var run = await ProcessRunner.RunAsync("pgbench", [.. connection, "-c", "12", "-j", "2", "-t", "60", "-M", protocol, "-n", database], Env, TimeSpan.FromMinutes(3));
        Assert.True(run.ExitCode == 0, run.Output);
        Assert.Contains("number of transactions actually processed: 720/720", run.Stdout);
        Assert.Contains("number of failed transactions: 0", run.Stdout);
    }

    // ---- raw extended-protocol helpers

    private static byte[] Parse(string name, string sql) => RawPgClient.Message('P', [.. Encoding.UTF8.GetBytes(name), 0, .. Encoding.UTF8.GetBytes(sql), 0, 0, 0]);

    private static byte[] Bind(string name) => RawPgClient.Message('B', [0, .. Encoding.UTF8.GetBytes(name), 0, 0, 0, 0, 0, 0, 0]);

    private static byte[] Execute() => RawPgClient.Message('E', [0, 0, 0, 0, 0]);

    private static byte[] Close(string name) => RawPgClient.Message('C', [(byte)'S', .. Encoding.UTF8.GetBytes(name), 0]);

    private static byte[] Sync() => RawPgClient.Message('S', []);

    /// <summary>Binds and executes a named statement; returns the first column of its row as text.</summary>
    private static async Task<string> ExecuteNamedAsync(RawPgClient client, string name)
    {
        await client.SendAsync([.. Bind(name), .. Execute(), .. Sync()]);
        var replies = await client.ReadUntilReadyAsync();
        var error = replies.FirstOrDefault(m => m.Code == 'E');
        Assert.True(error.Code != 'E', $"{error.SqlState}: {error.MessageText}");
        var row = replies.Single(m => m.Code == 'D').Payload;
        var length = System.Buffers.Binary.BinaryPrimitives.ReadInt32BigEndian(row.AsSpan(2));
        return Encoding.UTF8.GetString(row, 6, length);
    }
}
