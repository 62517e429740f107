using MProxy.Abstractions.Policy;
using MProxy.Grains.Budgets;
using MProxy.Grains.Configuration;
using MProxy.Grains.Exchange;
using MProxy.Grains.Hosting;
using MProxy.Grains.Storage;
using MProxy.Grains.Tests.Hosting;
using MProxy.TestSupport;

namespace MProxy.Grains.Tests.Storage;

/// <summary>One real PostgreSQL for the store tests; each test uses its own database.</summary>
public sealed class PostgresFixture : IAsyncLifetime
{
    private int _databases;

    public PostgresServer Server { get; private set; } = null!;

    public async ValueTask InitializeAsync() => Server = await PostgresServer.StartAsync();

    public async Task<string> NewDatabaseAsync()
    {
        var name = $"grains_{Interlocked.Increment(ref _databases)}";
        await Server.ExecuteAsync($"CREATE DATABASE {name}");
        return Server.ConnectionString(database: name);
    }

    public async ValueTask DisposeAsync() => await Server.DisposeAsync();
}

public sealed class PostgresGrainStoreTests(PostgresFixture postgres) : IClassFixture<PostgresFixture>
{
    private static CancellationToken Token => TestContext.Current.CancellationToken;

    [Fact]
    public async Task InitializeAsync_TwoSilosAtOnceThenAgain_CreatesSchemaOnce()
    {
        var connectionString = await postgres.NewDatabaseAsync();
        await using var first = new PostgresGrainStore(connectionString);
        await using var second = new PostgresGrainStore(connectionString);

        await Task.WhenAll(first.InitializeAsync(Token), second.InitializeAsync(Token));
        await first.InitializeAsync(Token);

        var database = new Npgsql.NpgsqlConnectionStringBuilder(connectionString).Database!;
        Assert.Equal(1L, await postgres.Server.ScalarAsync("SELECT count(*) FROM mproxy.schema_migrations", database));
        Assert.Equal((long)PostgresGrainStore.SchemaVersion, Convert.ToInt64(await postgres.Server.ScalarAsync("SELECT max(version) FROM mproxy.schema_migrations", database), System.Globalization.CultureInfo.InvariantCulture));
        Assert.True(await first.PingAsync(Token));
    }

    [Fact]
    public async Task CallAsync_StateWrittenByOneHost_IsReadBackByAFreshHost()
    {
        var connectionString = await postgres.NewDatabaseAsync();
        await using var store = new PostgresGrainStore(connectionString);
        await store.InitializeAsync(Token);
        var time = new ManualTimeProvider();
        await using (var host = new GrainHost(store, time))
        {
            await new CounterGrain(host, "k").IncrementAsync(Token);
            await new CounterGrain(host, "k").IncrementAsync(Token);
        }

        await using var fresh = new GrainHost(new PostgresGrainStore(connectionString), time);
        Assert.Equal(3, await new CounterGrain(fresh, "k").IncrementAsync(Token));

        var database = new Npgsql.NpgsqlConnectionStringBuilder(connectionString).Database!;
        Assert.Equal(3L, await postgres.Server.ScalarAsync("SELECT version FROM mproxy.grains WHERE type = 'counter' AND key = 'k'", database));
        Assert.Equal(3L, await postgres.Server.ScalarAsync("SELECT (state->>'Count')::bigint FROM mproxy.grains WHERE type = 'counter' AND key = 'k'", database));
        var listed = await store.ListAsync("counter", Token);
        Assert.Equal("k", Assert.Single(listed).Key.Key);
    }

    [Fact]
    public async Task CallAsync_TwoHostsOnOneDatabaseHammerOneKey_NoUpdateIsLostAndCallsNeverOverlap()
    {
        var connectionString = await postgres.NewDatabaseAsync();
        await using var firstStore = new PostgresGrainStore(connectionString);
        await using var secondStore = new PostgresGrainStore(connectionString);
        await firstStore.InitializeAsync(Token);
        var time = new ManualTimeProvider();
        await using var first = new GrainHost(firstStore, time);
        await using var second = new GrainHost(secondStore, time);
        var probe = new OverlapProbe();

        var calls = new List<Task<long>>();
        for (var i = 0; i < 100; i++)
        {
            var host = i % 2 == 0 ? first : second;
            calls.Add(Task.Run(() => new CounterGrain(host, "hot", probe).IncrementAsync(), Token));
        }
        var results = await Task.WhenAll(calls);

        Assert.Equal(Enumerable.Range(1, 100).Select(i => (long)i), results.Order());
        Assert.Equal(1, probe.MaxOverlap);
        var stored = await firstStore.ReadAsync(new GrainKey("counter", "hot"), Token);
        Assert.Equal(100, stored!.Version);
    }

    [Fact]
    public async Task Exchange_TwoSilosOnOneDatabaseServeOneTenant_CommittedRatesStayWithinBudget()
    {
        var connectionString = await postgres.NewDatabaseAsync();
        var policy = new PolicyConfig { Version = 1, Tenants = [new TenantPolicy(new TenantId("acme"), 300, 100)] };
        var time = new ManualTimeProvider();
        await using var firstStore = new PostgresGrainStore(connectionString);
        await using var secondStore = new PostgresGrainStore(connectionString);
        await firstStore.InitializeAsync(Token);
        await using var firstHost = new GrainHost(firstStore, time);
        await using var secondHost = new GrainHost(secondStore, time);
        var silos = new[]
        {
            new PolicyExchangeService(new PolicyGrainFactory(firstHost, new PolicyConfigStore(policy))),
            new PolicyExchangeService(new PolicyGrainFactory(secondHost, new PolicyConfigStore(policy))),
        };
        var applied = new long[6];

        for (var round = 0; round < 5; round++)
        {
            var exchanges = Enumerable.Range(0, 6).Select(async edge =>
            {
                var response = await silos[(edge + round) % 2].ExchangeAsync(new PolicyExchangeRequest
                {
                    Edge = new EdgeId($"edge-{edge}"),
                    Sequence = round + 1,
                    Tenants = [new TenantUsageReport { Tenant = new TenantId("acme"), DemandRuPerSecond = 1000, AppliedLeaseSequence = Volatile.Read(ref applied[edge]) }],
                }, Token);
                Volatile.Write(ref applied[edge], response.Leases[0].Sequence);
                return response.Leases[0];
            });
            await Task.WhenAll(exchanges);
            time.Advance(TimeSpan.FromSeconds(1));
        }

        var state = await firstHost.ReadAsync(new GrainKey(PolicyGrainFactory.TenantBudgetType, "acme"), GrainStateJsonContext.Default.TenantBudgetState, Token);
        Assert.Equal(6, state!.Edges.Count);
        Assert.Equal(30, state.LastSequence);
        Assert.True(state.Edges.Sum(e => TenantBudgetLogic.Committed(e).RuPerSecond) <= 300 + 1e-6);
        var snapshot = await new PolicyDirectory(new PolicyGrainFactory(secondHost, new PolicyConfigStore(policy))).SnapshotAsync(Token);
        Assert.Equal(6, snapshot.Edges.Count);
        Assert.Equal(300, Assert.Single(snapshot.Tenants).BudgetRuPerSecond);
    }
}
