using MProxy.TestSupport;
using Npgsql;
using NpgsqlTypes;

namespace MProxy.Integration.Tests.Postgres;

/// <summary>Simple and extended query protocol, COPY and transactions through the edge, with Npgsql.</summary>
public class QueryTests(PostgresFixture postgres) : IAsyncLifetime
{
    private EdgeServer _edge = null!;

    /// <summary>The edge's <c>network:</c> section (the default here; <see cref="QueryTestsOnSockets"/> runs the same tests on the runtime's sockets).</summary>
    protected virtual string Network => "";

    /// <summary>Appended to the names of the tables this class writes, so that it and its twin on the other transport never share one.</summary>
    protected virtual string Suffix => "";

    public async ValueTask InitializeAsync() => _edge = await EdgeServer.StartAsync(EdgeServer.AppConfig(postgres.Server, poolSize: 4, extra: Network));

    public async ValueTask DisposeAsync() => await _edge.DisposeAsync();

    [Fact]
    public async Task SimpleQuery_ThroughEdge_ReturnsServerRows()
    {
        await using var connection = await _edge.OpenAsync();
        await using var command = new NpgsqlCommand("SELECT 41 + 1, current_database(), current_user", connection);
        await using var reader = await command.ExecuteReaderAsync();
        Assert.True(await reader.ReadAsync());
        Assert.Equal(42, reader.GetInt32(0));
        Assert.Equal(PostgresServer.AppDatabase, reader.GetString(1));
        Assert.Equal(PostgresServer.AppUser, reader.GetString(2));
    }

    [Fact]
    public async Task ExtendedQuery_WithParameters_RoundTripsValues()
    {
        await using var connection = await _edge.OpenAsync();
        await using var command = new NpgsqlCommand("SELECT $1::int * 2, $2::text || '!', $3::bytea", connection)
        {
            Parameters =
            {
                new() { Value = 21 },
                new() { Value = "hello" },
                new() { Value = new byte[] { 1, 2, 3 } },
            },
        };
        await using var reader = await command.ExecuteReaderAsync();
        Assert.True(await reader.ReadAsync());
        Assert.Equal(42, reader.GetInt32(0));
        Assert.Equal("hello!", reader.GetString(1));
        Assert.Equal(new byte[] { 1, 2, 3 }, (byte[])reader.GetValue(2));
    }

    [Fact]
    public async Task LargeResult_StreamsAllRows()
    {
        await using var connection = await _edge.OpenAsync();
        await using var command = new NpgsqlCommand("SELECT i, repeat('x', 1000) FROM generate_series(1, 20000) i", connection);
        await using var reader = await command.ExecuteReaderAsync();
        long sum = 0;
        var rows = 0;
        while (await reader.ReadAsync())
        {
            sum += reader.GetInt32(0);
            Assert.Equal(1000, reader.GetString(1).Length);
            rows++;
        }
        Assert.Equal(20000, rows);
        Assert.Equal(20000L * 20001 / 2, sum);
    }

    [Fact]
    public async Task LargeValue_LargerThanPipeBuffers_RoundTrips()
    {
        await using var connection = await _edge.OpenAsync();
        var payload = new byte[8 * 1024 * 1024];
        new Random(7).NextBytes(payload);
        await using var command = new NpgsqlCommand("SELECT $1::bytea, length($1::bytea)", connection) { Parameters = { new() { Value = payload } } };
        await using var reader = await command.ExecuteReaderAsync();
        Assert.True(await reader.ReadAsync());
        Assert.Equal(payload, (byte[])reader.GetValue(0));
        Assert.Equal(payload.Length, reader.GetInt32(1));
    }

    [Fact]
    public async Task Transaction_RolledBack_LeavesNoRows_Committed_Persists()
    {
        await postgres.Server.ExecuteAsync($"CREATE TABLE IF NOT EXISTS tx_test{Suffix} (id int primary key, v text); GRANT ALL ON tx_test{Suffix} TO app;", PostgresServer.AppDatabase);
        await using var connection = await _edge.OpenAsync();
        await using (var tx = await connection.BeginTransactionAsync())
        {
            await new NpgsqlCommand($"INSERT INTO tx_test{Suffix} VALUES (1, 'rolled back')", connection, tx).ExecuteNonQueryAsync();
            await tx.RollbackAsync();
        }
        await using (var tx = await connection.BeginTransactionAsync())
        {
            await new NpgsqlCommand($"INSERT INTO tx_test{Suffix} VALUES (2, 'committed')", connection, tx).ExecuteNonQueryAsync();
            await tx.CommitAsync();
        }
        var ids = await postgres.Server.ScalarAsync($"SELECT string_agg(id::text, ',' ORDER BY id) FROM tx_test{Suffix} WHERE id IN (1, 2)", PostgresServer.AppDatabase);
        Assert.Equal("2", ids);
    }

    [Fact]
    public async Task ErrorInTransaction_ReportsServerError_AndRollbackRecovers()
    {
        await using var connection = await _edge.OpenAsync();
        await using var tx = await connection.BeginTransactionAsync();
        var error = await Assert.ThrowsAsync<PostgresException>(() => new NpgsqlCommand("SELECT 1/0", connection, tx).ExecuteScalarAsync());
        Assert.Equal("22012", error.SqlState);
        var aborted = await Assert.ThrowsAsync<PostgresException>(() => new NpgsqlCommand("SELECT 1", connection, tx).ExecuteScalarAsync());
        Assert.Equal("25P02", aborted.SqlState);
        await tx.RollbackAsync();
        Assert.Equal(1, await new NpgsqlCommand("SELECT 1", connection).ExecuteScalarAsync());
    }

    [Fact]
    public async Task CopyIn_AndCopyOut_TransferAllRows()
    {
        await postgres.Server.ExecuteAsync($"CREATE TABLE IF NOT EXISTS copy_test{Suffix} (id int, name text); GRANT ALL ON copy_test{Suffix} TO app; TRUNCATE copy_test{Suffix};", PostgresServer.AppDatabase);
        await using var connection = await _edge.OpenAsync();
        await using (var importer = await connection.BeginBinaryImportAsync($"COPY copy_test{Suffix} (id, name) FROM STDIN (FORMAT BINARY)"))
        {
            for (var i = 0; i < 5000; i++)
            {
                await importer.StartRowAsync();
                await importer.WriteAsync(i, NpgsqlDbType.Integer);
                await importer.WriteAsync("name-" + i, NpgsqlDbType.Text);
            }
            Assert.Equal(5000UL, await importer.CompleteAsync());
        }
        using (var exporter = await connection.BeginTextExportAsync($"COPY (SELECT id, name FROM copy_test{Suffix} ORDER BY id) TO STDOUT"))
        {
            var lines = 0;
            while (await exporter.ReadLineAsync() is { } line)
            {
                Assert.Equal($"{lines}\tname-{lines}", line);
                lines++;
            }
            Assert.Equal(5000, lines);
        }
        Assert.Equal(1, await new NpgsqlCommand("SELECT 1", connection).ExecuteScalarAsync());
    }

    [Fact]
    public async Task CopyIn_FailedByClient_ReportsErrorAndConnectionStaysUsable()
    {
        await postgres.Server.ExecuteAsync($"CREATE TABLE IF NOT EXISTS copy_fail{Suffix} (id int); GRANT ALL ON copy_fail{Suffix} TO app;", PostgresServer.AppDatabase);
        await using var connection = await _edge.OpenAsync();
        var writer = await connection.BeginTextImportAsync($"COPY copy_fail{Suffix} FROM STDIN");
        await writer.WriteLineAsync("not a number");
        await Assert.ThrowsAnyAsync<Exception>(async () => await writer.DisposeAsync());
        Assert.Equal(1, await new NpgsqlCommand("SELECT 1", connection).ExecuteScalarAsync());
    }

    [Fact]
    public async Task Batch_ManyStatementsPipelined_AllAnsweredInOrder()
    {
        await using var connection = await _edge.OpenAsync();
        await using var batch = new NpgsqlBatch(connection);
        for (var i = 0; i < 50; i++)
            batch.BatchCommands.Add(new NpgsqlBatchCommand($"SELECT {i}"));
        await using var reader = await batch.ExecuteReaderAsync();
        for (var i = 0; i < 50; i++)
        {
            Assert.True(await reader.ReadAsync());
            Assert.Equal(i, reader.GetInt32(0));
            Assert.Equal(i < 49, await reader.NextResultAsync());
        }
    }

    [Fact]
    public async Task Notice_FromServer_ReachesClient()
    {
        await using var connection = await _edge.OpenAsync();
        var notices = new List<string>();
        connection.Notice += (_, e) => notices.Add(e.Notice.MessageText);
        await new NpgsqlCommand("DO $$ BEGIN RAISE NOTICE 'hello from the server'; END $$", connection).ExecuteNonQueryAsync();
        Assert.Contains("hello from the server", notices);
    }
}

/// <summary><see cref="QueryTests"/> on the runtime's socket transport.</summary>
public sealed class QueryTestsOnSockets(PostgresFixture postgres) : QueryTests(postgres)
{
    protected override string Network => "network: { transport: sockets }";

    protected override string Suffix => "_sockets";
}
