using MProxy.Edge.Backends;
using MProxy.Integration.Tests.Backends;
using MProxy.TestSupport;
using MySql.Data.MySqlClient;
using static MProxy.Integration.Tests.MySql.MySqlRoutingTests;

namespace MProxy.Integration.Tests.MySql;

/// <summary>
/// A MariaDB host of a MySQL database goes away while the edge runs: each test kills a server, so
/// each has a primary and a replica of its own.
/// </summary>
public sealed class MySqlFailoverTests : IAsyncLifetime
{
    private readonly MariaDbReplicaPair _pair = new();
    private MySqlEdgeServer? _edge;

    private MySqlEdgeServer Edge => _edge!;

    public async ValueTask InitializeAsync()
    {
        await _pair.InitializeAsync();
        _edge = await MySqlEdgeServer.StartAsync(_pair.EdgeConfig());
        await WaitForReplicaReadsAsync(Edge);
    }

    public async ValueTask DisposeAsync()
    {
        if (_edge is not null)
            await _edge.DisposeAsync();
        await _pair.DisposeAsync();
    }

    [Fact]
    public async Task ReplicaKilled_ReadsGoToThePrimary_WithoutClientErrors()
    {
        await using var connection = await MariaDbFixture.OpenAsync(Edge.Port);
        Assert.Equal(2, await ServerIdAsync(connection));

        await _pair.Replica.KillAsync();
        var topology = await TopologyWaiter.WaitForAsync(BackendsOf(Edge).Monitor, t => t.ReadReplicas.IsEmpty, "the replica stops serving reads", TimeSpan.FromSeconds(30));
        Assert.NotEqual(BreakerState.Closed, topology.Backends[1].Breaker);

        for (var i = 0; i < 10; i++)
            Assert.Equal(1, await ServerIdAsync(connection));
        await using var fresh = await MariaDbFixture.OpenAsync(Edge.Port);
        Assert.Equal("one", await MariaDbFixture.ScalarAsync(fresh, "SELECT CONVERT(name USING utf8mb4) FROM items WHERE id = 1"));
    }

    [Fact]
    public async Task PrimaryKilled_ReplicaPromoted_WritesGoToTheNewPrimary()
    {
        await using var connection = await MariaDbFixture.OpenAsync(Edge.Port);
        await using (var before = new MySqlCommand("INSERT INTO items VALUES (10, 'before')", connection))
            await before.ExecuteNonQueryAsync();
        await _pair.WaitForReplicaAsync();

        await _pair.Primary.KillAsync();
        await _pair.PromoteReplicaAsync();

        // The same client, without reconnecting: its write waits for the new primary, then succeeds there.
        await using (var after = new MySqlCommand("INSERT INTO items VALUES (11, 'after')", connection))
            Assert.Equal(1, await after.ExecuteNonQueryAsync());
        var topology = BackendsOf(Edge).Topology;
        Assert.Equal(1, topology.PrimaryIndex);
        await using (var tx = await connection.BeginTransactionAsync())
        {
            Assert.Equal(2, await ServerIdAsync(connection, tx));
            Assert.Equal(2, Long(await MariaDbFixture.ScalarAsync(connection, "SELECT COUNT(*) FROM items WHERE id IN (10, 11)", tx)));
            await tx.CommitAsync();
        }
        Assert.Equal("after", (await _pair.Replica.ExecuteAsync("SELECT name FROM app.items WHERE id = 11")).Trim());

        // A client that connects after the failover lands on the new primary as well.
        await using var fresh = await MariaDbFixture.OpenAsync(Edge.Port);
        await using (var write = new MySqlCommand("INSERT INTO items VALUES (12, 'fresh')", fresh))
            Assert.Equal(1, await write.ExecuteNonQueryAsync());
    }
}
