using MProxy.Edge.Admin;
using MProxy.Edge.Sessions;
using MProxy.TestSupport;
using Npgsql;

namespace MProxy.Integration.Tests.Postgres;

/// <summary>
/// Deferred BEGIN (<c>pool.deferBegin</c>, on by default in transaction mode): a client's plain
/// BEGIN is answered by the edge and reaches the server with the transaction's first statement.
/// Each test holds the only server connection of a pool of one to show when a client holds it.
/// </summary>
public class DeferredBeginTests(PostgresFixture postgres)
{
    private PostgresServer Server => postgres.Server;

    private static async Task<RawPgClient> LoginAsync(EdgeServer edge)
    {
        var (client, _) = await RawPgClient.LoginAsync(edge.Port, PostgresServer.AppUser, PostgresServer.AppDatabase, PostgresServer.Password);
        return client;
    }

    private static async Task<List<PgWireMessage>> QueryAsync(RawPgClient client, string sql)
    {
        await client.SendQueryAsync(sql);
        return await client.ReadUntilReadyAsync();
    }

    /// <summary>The state SHOW CLIENTS gives the client whose BackendKeyData carried <paramref name="processId"/>.</summary>
    private static string ClientState(EdgeServer edge, int processId) =>
        edge.Get<ClientRegistry>().Sessions.OfType<IDescribedClient>().Select(c => c.Describe()).Single(c => c.Id == processId).State;

    private static char Status(List<PgWireMessage> replies) => (char)Assert.Single(replies, m => m.Code == 'Z').Payload[0];

    private static string Tag(List<PgWireMessage> replies) => Assert.Single(replies, m => m.Code == 'C').Text.TrimEnd('\0');

    /// <summary>Whether another client gets the pool's only connection now (else it is refused with 53300 after the short wait).</summary>
    private static async Task<bool> PoolIsFreeAsync(EdgeServer edge)
    {
        await using var other = await LoginAsync(edge);
        var replies = await QueryAsync(other, "SELECT 1");
        if (replies.Any(m => m.Code == 'E'))
        {
            Assert.Equal("53300", replies.First(m => m.Code == 'E').SqlState);
            return false;
        }
        return true;
    }

    [Fact]
    public async Task Begin_IsAnsweredAtOnce_AndTheTransactionHoldsAServerOnlyFromItsFirstStatement()
    {
        await using var edge = await EdgeServer.StartAsync(EdgeServer.AppConfig(Server, poolSize: 1, waitTimeoutMs: 300));
        var (client, welcome) = await RawPgClient.LoginAsync(edge.Port, PostgresServer.AppUser, PostgresServer.AppDatabase, PostgresServer.Password);
        await using var _ = client;
        var processId = System.Buffers.Binary.BinaryPrimitives.ReadInt32BigEndian(welcome.Single(m => m.Code == 'K').Payload);
        Assert.Equal('I', Status(await QueryAsync(client, "CREATE TABLE IF NOT EXISTS deferred_begin (id int)")));

        var begun = await QueryAsync(client, "BEGIN;");
        Assert.Equal("BEGIN", Tag(begun));
        Assert.Equal('T', Status(begun));
        Assert.True(await PoolIsFreeAsync(edge)); // BEGIN alone holds no server connection
        Assert.Equal("idle-in-transaction", ClientState(edge, processId)); // as SHOW CLIENTS shows it

        var inserted = await QueryAsync(client, "INSERT INTO deferred_begin VALUES (7)");
        Assert.Equal("INSERT 0 1", Tag(inserted));
        Assert.Equal('T', Status(inserted)); // the server's own status: its transaction is open
        Assert.False(await PoolIsFreeAsync(edge));
        Assert.Equal("active", ClientState(edge, processId));
        Assert.Equal('T', Status(await QueryAsync(client, "SELECT count(*) FROM deferred_begin WHERE id = 7")));

        var rolledBack = await QueryAsync(client, "ROLLBACK");
        Assert.Equal("ROLLBACK", Tag(rolledBack));
        Assert.Equal('I', Status(rolledBack));
        // The insert ran inside the transaction: the rollback undid it.
        Assert.Equal(0L, await Server.ScalarAsync("SELECT count(*) FROM deferred_begin WHERE id = 7", PostgresServer.AppDatabase));
        Assert.True(await PoolIsFreeAsync(edge));
    }

    [Fact]
    public async Task DeferredBegin_KeepsItsModes_AndTheTransactionsSnapshot()
    {
        await using var edge = await EdgeServer.StartAsync(EdgeServer.AppConfig(Server, poolSize: 1));
        await using var client = await LoginAsync(edge);
        Assert.Equal("START TRANSACTION", Tag(await QueryAsync(client, "start transaction isolation level repeatable read, read only")));

        var shown = await QueryAsync(client, "SELECT current_setting('transaction_isolation') || '/' || current_setting('transaction_read_only')");
        Assert.Contains(shown, m => m.Code == 'D' && m.Text.Contains("repeatable read/on", StringComparison.Ordinal));
        var write = await QueryAsync(client, "CREATE TABLE deferred_ro (id int)");
        Assert.Equal("25006", Assert.Single(write, m => m.Code == 'E').SqlState); // read-only transaction
        Assert.Equal('E', Status(write));
        Assert.Equal("ROLLBACK", Tag(await QueryAsync(client, "COMMIT")));
    }

    [Fact]
    public async Task BeginThenCommitOrRollback_WithoutAStatement_NeverWaitsForTheFullPool()
    {
        await using var edge = await EdgeServer.StartAsync(EdgeServer.AppConfig(Server, poolSize: 1, waitTimeoutMs: 300));
        await using var holder = await edge.OpenAsync();
        await using var tx = await holder.BeginTransactionAsync();
        await new NpgsqlCommand("SELECT 1", holder, tx).ExecuteScalarAsync(); // holds the only connection

        await using var client = await LoginAsync(edge);
        foreach (var (end, tag) in new[] { ("COMMIT", "COMMIT"), ("end;", "COMMIT"), ("ROLLBACK", "ROLLBACK"), ("abort", "ROLLBACK") })
        {
            Assert.Equal('T', Status(await QueryAsync(client, "BEGIN")));
            var ended = await QueryAsync(client, end);
            Assert.Equal(tag, Tag(ended));
            Assert.Equal('I', Status(ended));
        }
        await tx.CommitAsync();
    }

    [Fact]
    public async Task Refusal_InsideADeferredTransaction_FailsIt_AsTheServerWould()
    {
        await using var edge = await EdgeServer.StartAsync(EdgeServer.AppConfig(Server, poolSize: 1, waitTimeoutMs: 300));
        await using var holder = await edge.OpenAsync();
        var tx = await holder.BeginTransactionAsync();
        await new NpgsqlCommand("SELECT 1", holder, tx).ExecuteScalarAsync();

        await using var client = await LoginAsync(edge);
        Assert.Equal('T', Status(await QueryAsync(client, "BEGIN")));
        var refused = await QueryAsync(client, "SELECT 1");
        Assert.Equal("53300", Assert.Single(refused, m => m.Code == 'E').SqlState);
        Assert.Equal('E', Status(refused)); // failed, not idle: the client's transaction is still open
        await tx.CommitAsync(); // the pool frees up

        // The next statement reaches the server, which answers it as part of a failed transaction.
        var ignored = await QueryAsync(client, "SELECT 2");
        Assert.Equal("25P02", Assert.Single(ignored, m => m.Code == 'E').SqlState);
        Assert.Equal('E', Status(ignored));
        var ended = await QueryAsync(client, "COMMIT");
        Assert.Equal("ROLLBACK", Tag(ended));
        Assert.Equal('I', Status(ended));
        Assert.Contains(await QueryAsync(client, "SELECT 3"), m => m.Code == 'D');

        // Refused, then ended at once: the edge answers the COMMIT (as ROLLBACK) without a server.
        tx = await holder.BeginTransactionAsync();
        await new NpgsqlCommand("SELECT 1", holder, tx).ExecuteScalarAsync();
        Assert.Equal('T', Status(await QueryAsync(client, "BEGIN")));
        Assert.Equal('E', Status(await QueryAsync(client, "SELECT 4")));
        var rolledBack = await QueryAsync(client, "COMMIT");
        Assert.Equal("ROLLBACK", Tag(rolledBack));
        Assert.Equal('I', Status(rolledBack));
        await tx.CommitAsync();
    }

    [Fact]
    public async Task Npgsql_BeginPipelinedWithItsFirstCommand_Commits()
    {
        await using var edge = await EdgeServer.StartAsync(EdgeServer.AppConfig(Server, poolSize: 1));
        await using var connection = await edge.OpenAsync();
        await new NpgsqlCommand("CREATE TABLE IF NOT EXISTS deferred_npgsql (id int); DELETE FROM deferred_npgsql", connection).ExecuteNonQueryAsync();
        await using (var tx = await connection.BeginTransactionAsync())
        {
            await new NpgsqlCommand("INSERT INTO deferred_npgsql VALUES (11)", connection, tx).ExecuteNonQueryAsync();
            Assert.Equal(1L, await new NpgsqlCommand("SELECT count(*) FROM deferred_npgsql WHERE id = 11", connection, tx).ExecuteScalarAsync());
            await tx.CommitAsync();
        }
        await using (var tx = await connection.BeginTransactionAsync())
        {
            await new NpgsqlCommand("INSERT INTO deferred_npgsql VALUES (12)", connection, tx).ExecuteNonQueryAsync();
            await tx.RollbackAsync();
        }
        Assert.Equal(1L, await Server.ScalarAsync("SELECT count(*) FROM deferred_npgsql WHERE id IN (11, 12)", PostgresServer.AppDatabase));
    }

    [Theory]
    [InlineData("BEGIN", false)]                               // switched off
    [InlineData("BEGIN ISOLATION LEVEL SERIALIZABLE", true)]   // a mode a standby refuses: sent at once
    [InlineData("BEGIN; SELECT 1;", true)]                     // not a lone BEGIN
    public async Task NotDeferred_TheBeginHoldsTheServerAtOnce(string begin, bool deferBegin)
    {
        var config = EdgeServer.AppConfig(Server, poolSize: 1, waitTimeoutMs: 300)
            .Replace("waitTimeoutMs: 300", $"waitTimeoutMs: 300\n  deferBegin: {(deferBegin ? "true" : "false")}", StringComparison.Ordinal);
        await using var edge = await EdgeServer.StartAsync(config);
        await using var client = await LoginAsync(edge);
        Assert.Equal('T', Status(await QueryAsync(client, begin)));
        Assert.False(await PoolIsFreeAsync(edge));
        Assert.Equal('I', Status(await QueryAsync(client, "COMMIT")));
    }
}
