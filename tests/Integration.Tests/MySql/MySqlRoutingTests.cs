using MProxy.Edge.Backends;
using MProxy.Edge.Protocols.MySql;
using MProxy.Integration.Tests.Backends;
using MProxy.TestSupport;
using MySql.Data.MySqlClient;

namespace MProxy.Integration.Tests.MySql;

/// <summary>
/// Read/write routing of a MySQL database with a MariaDB primary (server_id 1) and a GTID replica
/// (server_id 2) through the edge: where each kind of statement runs, told by <c>@@server_id</c>.
/// </summary>
public sealed class MySqlRoutingTests(MariaDbReplicaPair pair) : IClassFixture<MariaDbReplicaPair>, IAsyncLifetime
{
    private const long PrimaryId = 1;
    internal const long ReplicaId = 2;

    private MySqlEdgeServer? _edge;

    private MySqlEdgeServer Edge => _edge!;

    public async ValueTask InitializeAsync()
    {
        _edge = await MySqlEdgeServer.StartAsync(pair.EdgeConfig());
        await WaitForReplicaReadsAsync(Edge);
    }

    public async ValueTask DisposeAsync() => await Edge.DisposeAsync();

    /// <summary>Waits (bounded) until the monitor has probed both hosts and the replica serves reads.</summary>
    internal static Task<BackendTopology> WaitForReplicaReadsAsync(MySqlEdgeServer edge) =>
        TopologyWaiter.WaitForAsync(BackendsOf(edge).Monitor, t => t.PrimaryIndex == 0 && t.ReadReplicas.Length == 1, "the replica serves reads", TimeSpan.FromSeconds(30));

    internal static DatabaseBackends BackendsOf(MySqlEdgeServer edge) => Assert.Single(edge.Get<MySqlPoolRegistry>().AllBackends);

    /// <summary>Waits (bounded) until the replica has applied everything the primary has now, and the monitor has seen it.</summary>
    internal static async Task WaitForReplicaProbedAsync(MySqlEdgeServer edge, MariaDbReplicaPair pair)
    {
        await pair.WaitForReplicaAsync();
        var target = MySqlBackendProbe.GtidSequence(await pair.Primary.ExecuteAsync("SELECT @@global.gtid_binlog_pos"), 0);
        await TopologyWaiter.WaitForAsync(BackendsOf(edge).Monitor, t => t.Backends[1].Lsn.Value >= target && t.ReadReplicas.Length == 1, "the monitor sees the replica caught up", TimeSpan.FromSeconds(30));
    }

    /// <summary>
    /// Asserts that a read on <paramref name="connection"/> ran on the replica; when it did not, the
    /// failure shows the monitor's view of every host (role, read eligibility, breaker, lag, last error),
    /// which is what decides — an intermittent "read went to the primary" has been seen under load.
    /// </summary>
    internal static async Task AssertReadsOnReplicaAsync(MySqlEdgeServer edge, MySqlConnection connection)
    {
        var id = await ServerIdAsync(connection);
        if (id == ReplicaId)
            return;
        var topology = BackendsOf(edge).Topology;
        Assert.Fail($"the read ran on server {id}, not the replica ({ReplicaId}); monitor: " + string.Join("; ", topology.Backends.Select(b =>
            $"{b.Endpoint} {b.Role} {b.Eligibility} breaker {b.Breaker} lag {b.LagBytes?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "-"} tx/{b.LagTime?.TotalMilliseconds.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "-"} ms last error {b.LastError ?? "none"}")));
    }

    internal static long Long(object? value) => Convert.ToInt64(value, System.Globalization.CultureInfo.InvariantCulture);

    internal static async Task<long> ServerIdAsync(MySqlConnection connection, MySqlTransaction? transaction = null) =>
        Long(await MariaDbFixture.ScalarAsync(connection, "SELECT @@server_id", transaction));

    [Fact]
    public async Task Monitor_ProbesMariaDb_PrimaryAndReplicaRolesAndGtidPositions()
    {
        await pair.Primary.ExecuteAsync("INSERT INTO app.items VALUES (100, 'position') ON DUPLICATE KEY UPDATE name = 'position'");
        await pair.WaitForReplicaAsync();
        var expected = MySqlBackendProbe.GtidSequence(await pair.Primary.ExecuteAsync("SELECT @@global.gtid_binlog_pos"), 0);
        var topology = await TopologyWaiter.WaitForAsync(BackendsOf(Edge).Monitor,
            t => t.Backends[0].Lsn.Value >= expected && t.Backends[1].Lsn.Value >= expected && t.Backends[1].LagBytes == 0, "both hosts report the position", TimeSpan.FromSeconds(30));
        Assert.Equal(BackendRole.Primary, topology.Backends[0].Role);
        Assert.Equal(BackendRole.Replica, topology.Backends[1].Role);
        Assert.True(expected > 0);
        Assert.NotNull(topology.Backends[1].ReplayAge); // Seconds_Behind_Master, readable with SLAVE MONITOR
    }

    [Fact]
    public async Task Read_OutsideTransaction_RunsOnTheReplica()
    {
        await using var connection = await MariaDbFixture.OpenAsync(Edge.Port);
        for (var i = 0; i < 5; i++)
            await AssertReadsOnReplicaAsync(Edge, connection);
        Assert.Equal("one", await MariaDbFixture.ScalarAsync(connection, "SELECT CONVERT(name USING utf8mb4) FROM items WHERE id = 1"));
    }

    [Fact]
    public async Task Write_Transaction_AndLockingRead_RunOnThePrimary()
    {
        await using var connection = await MariaDbFixture.OpenAsync(Edge.Port);
        // The replica is read_only: the write would fail there.
        await using (var insert = new MySqlCommand("INSERT INTO items VALUES (2, 'two') ON DUPLICATE KEY UPDATE name = 'two'", connection))
            await insert.ExecuteNonQueryAsync();
        Assert.Equal(PrimaryId, Long(await MariaDbFixture.ScalarAsync(connection, "SELECT @@server_id FROM items WHERE id = 1 FOR UPDATE")));
        await using (var tx = await connection.BeginTransactionAsync())
        {
            Assert.Equal(PrimaryId, await ServerIdAsync(connection, tx));
            Assert.Equal("two", await MariaDbFixture.ScalarAsync(connection, "SELECT CONVERT(name USING utf8mb4) FROM items WHERE id = 2", tx));
            await tx.CommitAsync();
        }
        // Read-your-writes: the next read sees the write wherever it runs (the primary, or the replica
        // once a probe has seen it apply the write — which can already be the case on a fast box; the
        // strict case, a replica that has not applied it, is ReadYourWrites_ReadAfterWrite_…).
        Assert.Equal("two", await MariaDbFixture.ScalarAsync(connection, "SELECT CONVERT(name USING utf8mb4) FROM items WHERE id = 2"));
        await WaitForReplicaProbedAsync(Edge, pair);
        Assert.Equal(ReplicaId, await ServerIdAsync(connection));
    }

    [Fact]
    public async Task SessionState_UserVariableOrTemporaryTable_KeepsTheClientOnThePrimary()
    {
        await using (var withVariable = await MariaDbFixture.OpenAsync(Edge.Port, extra: "Allow User Variables=true"))
        {
            await using (var set = new MySqlCommand("SET @answer = 42", withVariable))
                await set.ExecuteNonQueryAsync();
            await using var read = new MySqlCommand("SELECT @@server_id, @answer", withVariable);
            await using var reader = await read.ExecuteReaderAsync();
            Assert.True(await reader.ReadAsync());
            Assert.Equal(PrimaryId, Long(reader.GetValue(0)));
            Assert.Equal(42, Long(reader.GetValue(1)));
        }
        await using (var assigned = await MariaDbFixture.OpenAsync(Edge.Port, extra: "Allow User Variables=true"))
        {
            Assert.Equal(7, Long(await MariaDbFixture.ScalarAsync(assigned, "SELECT @seven := 7")));
            Assert.Equal(PrimaryId, await ServerIdAsync(assigned));
        }
        await using (var withTemp = await MariaDbFixture.OpenAsync(Edge.Port))
        {
            await using (var create = new MySqlCommand("CREATE TEMPORARY TABLE scratch (a INT)", withTemp))
                await create.ExecuteNonQueryAsync();
            Assert.Equal(PrimaryId, Long(await MariaDbFixture.ScalarAsync(withTemp, "SELECT @@server_id FROM (SELECT COUNT(*) FROM scratch) s")));
        }
    }

    [Fact]
    public async Task ReadYourWrites_ReadAfterWrite_SeesTheRow_WhileTheReplicaHasNotApplied()
    {
        // Hold the replica back: it stays a healthy replica (no lag bound) but applies nothing.
        await pair.Replica.ExecuteAsync("STOP SLAVE SQL_THREAD");
        try
        {
            await using var writer = await MariaDbFixture.OpenAsync(Edge.Port);
            await using var other = await MariaDbFixture.OpenAsync(Edge.Port);
            await using (var insert = new MySqlCommand("INSERT INTO items VALUES (3, 'three') ON DUPLICATE KEY UPDATE name = 'three'", writer))
                await insert.ExecuteNonQueryAsync();
            await using (var delete = new MySqlCommand("DELETE FROM items WHERE id = 4", writer))
                await delete.ExecuteNonQueryAsync();
            await using (var insert = new MySqlCommand("INSERT INTO items VALUES (4, 'four')", writer))
                await insert.ExecuteNonQueryAsync();
            // The writer's reads go where its write is visible: the primary.
            Assert.Equal("four", await MariaDbFixture.ScalarAsync(writer, "SELECT CONVERT(name USING utf8mb4) FROM items WHERE id = 4"));
            Assert.Equal(PrimaryId, await ServerIdAsync(writer));
            // A client without that write still reads from the replica, which does not have the row.
            Assert.Equal(ReplicaId, await ServerIdAsync(other));
            Assert.Null(await MariaDbFixture.ScalarAsync(other, "SELECT CONVERT(name USING utf8mb4) FROM items WHERE id = 4"));
        }
        finally
        {
            await pair.Replica.ExecuteAsync("START SLAVE SQL_THREAD");
        }
        await pair.WaitForReplicaAsync();
    }

    [Fact]
    public async Task PreparedStatement_PreparedOnThePrimary_ExecutesOnBothHosts()
    {
        // The binary protocol by hand: MySql.Data 8.0.16's own prepared statements break on MariaDB 10.11
        // ("Malformed communication packet", with or without the edge).
        await WaitForReplicaProbedAsync(Edge, pair);
        var (client, login) = await MySqlRawClient.LoginAsync(Edge.Port, MariaDbServer.AppUser, MariaDbServer.Password, MariaDbServer.AppDatabase);
        await using var _ = client;
        Assert.True(login.IsOk, login.ErrorMessage);

        // Prepared inside a transaction: on the primary.
        await client.SendQueryAsync("BEGIN");
        Assert.True((await client.ReadResultAsync())[0].IsOk);
        await client.SendCommandAsync(0x16, System.Text.Encoding.UTF8.GetBytes("SELECT CAST(@@server_id AS CHAR)"));
        var prepareOk = await client.ReadAsync();
        Assert.True(prepareOk.IsOk, prepareOk.ErrorMessage);
        var statementId = System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(prepareOk.Payload.AsSpan(1));
        Assert.Equal(1, System.Buffers.Binary.BinaryPrimitives.ReadUInt16LittleEndian(prepareOk.Payload.AsSpan(5)));
        Assert.False((await client.ReadAsync()).IsEof); // the column
        Assert.True((await client.ReadAsync()).IsEof);
        Assert.Equal(PrimaryId.ToString(System.Globalization.CultureInfo.InvariantCulture), await ExecuteAsync(client, statementId));
        await client.SendQueryAsync("COMMIT");
        Assert.True((await client.ReadResultAsync())[0].IsOk);

        // Outside a transaction the read goes to the replica, where the edge prepares it again.
        await WaitForReplicaProbedAsync(Edge, pair);
        Assert.Equal(ReplicaId.ToString(System.Globalization.CultureInfo.InvariantCulture), await ExecuteAsync(client, statementId));
        Assert.Equal(ReplicaId.ToString(System.Globalization.CultureInfo.InvariantCulture), await ExecuteAsync(client, statementId));
    }

    /// <summary>COM_STMT_EXECUTE of a statement without parameters; the one string value of its one binary row.</summary>
    private static async Task<string> ExecuteAsync(MySqlRawClient client, uint statementId)
    {
        var execute = new byte[10];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(execute.AsSpan(0), statementId);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(execute.AsSpan(5), 1); // no cursor, one iteration
        await client.SendCommandAsync(0x17, execute[..9]);
        var packets = await client.ReadResultAsync();
        Assert.False(packets[0].IsError, packets[0].ErrorMessage);
        // column count, column, EOF, row, EOF; a binary row is 0x00, the NULL bitmap (one byte here), the value.
        Assert.Equal(5, packets.Count);
        var row = packets[3].Payload;
        Assert.Equal(0, row[0]);
        return System.Text.Encoding.UTF8.GetString(row, 3, row[2]);
    }

    [Fact]
    public async Task SessionPoolMode_EverythingOnThePrimary()
    {
        await using var edge = await MySqlEdgeServer.StartAsync(pair.EdgeConfig(poolMode: "session"));
        await WaitForReplicaReadsAsync(edge);
        await using var connection = await MariaDbFixture.OpenAsync(edge.Port);
        Assert.Equal(PrimaryId, await ServerIdAsync(connection));
    }
}
