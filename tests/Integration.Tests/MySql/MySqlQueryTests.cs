using MProxy.TestSupport;
using MySql.Data.MySqlClient;

namespace MProxy.Integration.Tests.MySql;

/// <summary>Text queries, multi-results, large values and transactions through the edge with MySql.Data.</summary>
[Collection(MariaDbCollection.Name)]
public class MySqlQueryTests(MariaDbFixture fixture) : IAsyncLifetime
{
    private MySqlEdgeServer? _edge;

    private MySqlEdgeServer Edge => _edge!;

    /// <summary>The edge's <c>network:</c> section (the default here; <see cref="MySqlQueryTestsOnSockets"/> runs the same tests on the runtime's sockets).</summary>
    protected virtual string Network => "";

    /// <summary>Appended to the names of the tables this class writes, so that it and its twin on the other transport never share one.</summary>
    protected virtual string Suffix => "";

    public async ValueTask InitializeAsync() => _edge = await MySqlEdgeServer.StartAsync(MySqlEdgeServer.AppConfig(fixture.Server, extra: Network));

    public async ValueTask DisposeAsync() => await Edge.DisposeAsync();

    [Fact]
    public async Task Query_Select_ReturnsValuesOfEachType()
    {
        await using var connection = await MariaDbFixture.OpenAsync(Edge.Port);
        await using var command = new MySqlCommand("SELECT 42, CAST('hello' AS CHAR CHARACTER SET utf8mb4), 2.5, NULL, CAST(X'010203' AS BINARY)", connection);
        await using var reader = await command.ExecuteReaderAsync();
        Assert.True(await reader.ReadAsync());
        Assert.Equal(42L, Convert.ToInt64(reader.GetValue(0), System.Globalization.CultureInfo.InvariantCulture));
        Assert.Equal("hello", reader.GetString(1));
        Assert.Equal(2.5m, reader.GetDecimal(2));
        Assert.True(reader.IsDBNull(3));
        Assert.Equal(new byte[] { 1, 2, 3 }, (byte[])reader.GetValue(4));
        Assert.False(await reader.ReadAsync());
    }

    [Fact]
    public async Task MultiStatement_ReturnsEveryResultSet()
    {
        await using var connection = await MariaDbFixture.OpenAsync(Edge.Port);
        await using var command = new MySqlCommand("SELECT 1; SELECT 2 UNION ALL SELECT 3; DO 0; SELECT 4", connection);
        await using var reader = await command.ExecuteReaderAsync();
        var results = new List<List<long>>();
        do
        {
            var rows = new List<long>();
            while (await reader.ReadAsync())
                rows.Add(Convert.ToInt64(reader.GetValue(0), System.Globalization.CultureInfo.InvariantCulture));
            results.Add(rows);
        }
        while (await reader.NextResultAsync());
        Assert.Equal([[1], [2, 3], [4]], results);
    }

    [Fact]
    public async Task LargeResult_StreamsAllRows()
    {
        await using var connection = await MariaDbFixture.OpenAsync(Edge.Port);
        await using var command = new MySqlCommand("SELECT seq, CONVERT(REPEAT('x', 1000) USING utf8mb4) FROM seq_1_to_20000", connection);
        await using var reader = await command.ExecuteReaderAsync();
        long sum = 0;
        var rows = 0;
        while (await reader.ReadAsync())
        {
            sum += reader.GetInt64(0);
            Assert.Equal(1000, reader.GetString(1).Length);
            rows++;
        }
        Assert.Equal(20000, rows);
        Assert.Equal(20000L * 20001 / 2, sum);
    }

    [Fact]
    public async Task ValueOver16MiB_SplitAcrossPackets_RoundTripsBothWays()
    {
        await using var connection = await MariaDbFixture.OpenAsync(Edge.Port);
        var text = new string('a', 17 * 1024 * 1024) + "end";
        await using var command = new MySqlCommand("SELECT LENGTH(@p), @p", connection);
        command.Parameters.AddWithValue("@p", text);
        await using var reader = await command.ExecuteReaderAsync();
        Assert.True(await reader.ReadAsync());
        Assert.Equal(text.Length, reader.GetInt64(0));
        Assert.Equal(text, reader.GetString(1));
    }

    [Fact]
    public async Task Transaction_RolledBack_LeavesNoRows_Committed_Persists()
    {
        await fixture.Server.ExecuteAsync($"CREATE TABLE IF NOT EXISTS tx_test{Suffix} (id INT PRIMARY KEY, v VARCHAR(20)) ENGINE=InnoDB", MariaDbServer.AppDatabase);
        await using var connection = await MariaDbFixture.OpenAsync(Edge.Port);
        await using (var tx = await connection.BeginTransactionAsync())
        {
            await new MySqlCommand($"INSERT INTO tx_test{Suffix} VALUES (1, 'rolled back')", connection, tx).ExecuteNonQueryAsync();
            await tx.RollbackAsync();
        }
        await using (var tx = await connection.BeginTransactionAsync())
        {
            await new MySqlCommand($"INSERT INTO tx_test{Suffix} VALUES (2, 'committed')", connection, tx).ExecuteNonQueryAsync();
            await tx.CommitAsync();
        }
        Assert.Equal("2", await fixture.Server.ExecuteAsync($"SELECT GROUP_CONCAT(id ORDER BY id) FROM tx_test{Suffix} WHERE id IN (1, 2)", MariaDbServer.AppDatabase));
    }

    [Fact]
    public async Task ServerError_IsRelayed_AndTheConnectionStaysUsable()
    {
        await using var connection = await MariaDbFixture.OpenAsync(Edge.Port);
        var error = await Assert.ThrowsAsync<MySqlException>(() => new MySqlCommand("SELECT * FROM no_such_table", connection).ExecuteScalarAsync());
        Assert.Equal(1146, error.Number);
        Assert.Equal(7L, Convert.ToInt64(await MariaDbFixture.ScalarAsync(connection, "SELECT 7"), System.Globalization.CultureInfo.InvariantCulture));
    }

    [Fact]
    public async Task CommandLineClient_RunsQueriesAndMultiStatements()
    {
        var result = await MariaDbServer.RunClientAsync(Edge.Port, MariaDbServer.AppUser, MariaDbServer.Password, MariaDbServer.AppDatabase,
            "SELECT 6 * 7; SELECT DATABASE(); CREATE TEMPORARY TABLE t (a INT); INSERT INTO t VALUES (1), (2); SELECT SUM(a) FROM t;\n");
        Assert.True(result.ExitCode == 0, result.Output);
        Assert.Equal(["42", "app", "3"], result.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries));
    }
}

/// <summary><see cref="MySqlQueryTests"/> on the runtime's socket transport.</summary>
[Collection(MariaDbCollection.Name)]
public sealed class MySqlQueryTestsOnSockets(MariaDbFixture fixture) : MySqlQueryTests(fixture)
{
    protected override string Network => "network: { transport: sockets }";

    protected override string Suffix => "_sockets";
}
