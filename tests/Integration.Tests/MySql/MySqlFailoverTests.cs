using MProxy.Edge.Backends;
using MProxy.Edge.Protocols.MySql;
using MProxy.Integration.Tests.Backends;
using MProxy.Integration.Tests.Postgres;
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
        await AssertReadsOnReplicaAsync(Edge, connection);

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

    [Fact]
    public async Task PrimaryKilled_NewClientsStillLogIn_AndTheirWriteWaitsForThePromotion()
    {
        await using (var first = await MariaDbFixture.OpenAsync(Edge.Port))
        await using (var write = new MySqlCommand("INSERT INTO items VALUES (20, 'first')", first))
            await write.ExecuteNonQueryAsync();
        await _pair.WaitForReplicaAsync();

        await _pair.Primary.KillAsync();
        await TopologyWaiter.WaitForAsync(BackendsOf(Edge).Monitor, t => !t.HasUsablePrimary, "the primary is out", TimeSpan.FromSeconds(30));
        // Losing the host closed its pools; the next client's login must not need the host (it did:
        // the recreated pool had never connected, so the login opened a connection to check the
        // credentials and failed with "cannot connect to server").
        await PoolingTests.WaitUntilAsync(() => !Edge.Get<MySqlPoolRegistry>().All.Any(p => p.Endpoint.Port == _pair.Primary.Port), 30_000);
        // (The driver's own queries at open are reads, and the replica serves none while the monitor
        // cannot tell its lag — maxReplicaLagMs is 0 — so the open itself waits for the promotion.)
        var writing = Task.Run(async () =>
        {
            await using var fresh = await MariaDbFixture.OpenAsync(Edge.Port);
            await using var after = new MySqlCommand("INSERT INTO items VALUES (21, 'while down')", fresh);
            return await after.ExecuteNonQueryAsync();
        });
        await Task.Delay(500, TestContext.Current.CancellationToken);
        Assert.False(writing.IsCompleted, "the client should wait for a primary (failoverWaitMs), not fail at once");

        await _pair.PromoteReplicaAsync();
        Assert.Equal(1, await writing.WaitAsync(TimeSpan.FromSeconds(60), TestContext.Current.CancellationToken));
        Assert.Equal("while down", (await _pair.Replica.ExecuteAsync("SELECT name FROM app.items WHERE id = 21")).Trim());
    }
}
