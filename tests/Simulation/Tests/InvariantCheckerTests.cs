using System.Text.Json;
using MProxy.Abstractions;
using MProxy.Abstractions.Policy;
using MProxy.Edge.Qos;
using MProxy.Grains;
using MProxy.Grains.Budgets;
using MProxy.Grains.Capacity;
using MProxy.Grains.Hosting;
using MProxy.Simulation.Backends;
using MProxy.Simulation.Core;
using MProxy.Simulation.Edges;
using MProxy.Simulation.Workloads;
using MProxy.Simulation.World;

namespace MProxy.Simulation.Tests;

/// <summary>
/// Each invariant checker is shown to fail on a deliberately broken component — a pool that hands one
/// connection to two clients, a transaction moved to another host, a pool that loses count of its
/// connections, a bucket over-granted, a scheduler that lets LOW overtake HIGH, a request never
/// answered, a grain double-leasing — and, where it matters, to pass on the real one. A checker that
/// can never fail would let every seed pass.
/// </summary>
public sealed class InvariantCheckerTests
{
    /// <summary>A world built (not run) from a seed with one edge: real components, nothing started.</summary>
    private static SimWorld NewWorld(ulong seed = 1) => new(SimOptions.Generate(seed) with { Edges = 1 });

    private static void RunClock(SimWorld world, TimeSpan until)
    {
        var clock = world.Sim.Clock;
        var end = clock.NowTicks + until.Ticks;
        world.Sim.Clock.At(end, () => { });
        while (clock.RunNext(end))
        {
        }
    }

    private static FakeServerConnection Connect(SimWorld world, int host = 0) => world.Cluster.Hosts[host].Accept("test-pool", 0);

    [Fact]
    public void ExclusiveConnection_ConnectionHandedToSecondClient_Fails()
    {
        var world = NewWorld();
        var edge = world.Edges[0];
        var first = edge.OpenSession("shop");
        var second = edge.OpenSession("shop");
        var connection = Connect(world);

        world.Checks.Connections.OnAttach(first, connection);
        connection.Owner = first.Id;
        Assert.False(world.Checks.Failed);

        // A broken pool leases the attached connection again.
        world.Checks.Connections.OnAttach(second, connection);
        Assert.Equal("exclusive-connection", world.Checks.Violation?.Invariant);
    }

    [Fact]
    public void ExclusiveConnection_StatementInsideAnotherClientsTransaction_Fails()
    {
        var world = NewWorld();
        var edge = world.Edges[0];
        var first = edge.OpenSession("shop");
        var second = edge.OpenSession("shop");
        var connection = Connect(world);
        connection.Owner = first.Id;
        connection.BeginTransaction();
        world.Checks.Connections.OnExecuted(first, connection, new ExecResult(null, null, 0, 0, false, 0));
        Assert.False(world.Checks.Failed);

        // The first client's transaction is open; the connection goes to the second client anyway.
        connection.Owner = second.Id;
        world.Checks.Connections.OnExecute(second, connection, Statements.PointRead("t_shop", 1));
        Assert.Equal("exclusive-connection", world.Checks.Violation?.Invariant);
    }

    [Fact]
    public void TransactionOneBackend_StatementOnAnotherHost_Fails()
    {
        var world = NewWorld(9); // a seed with replicas
        Assert.True(world.Cluster.Hosts.Count > 1);
        var session = world.Edges[0].OpenSession("shop");
        var began = Connect(world, 0);
        began.Owner = session.Id;
        began.BeginTransaction();
        world.Checks.Connections.OnExecuted(session, began, new ExecResult(null, null, 0, 0, false, 0));

        // Mid-transaction, a broken router sends the next statement to another host.
        var other = Connect(world, 1);
        other.Owner = session.Id;
        world.Checks.Connections.OnExecute(session, other, Statements.PointRead("t_shop", 1));
        Assert.Equal("transaction-one-backend", world.Checks.Violation?.Invariant);
    }

    [Fact]
    public void PoolBounds_ConnectionOpenedBehindThePoolsBack_Fails()
    {
        var world = NewWorld();
        var edge = world.Edges[0];
        var pool = edge.PoolFor(0);
        world.Checks.Pools.AfterEvent(world);
        Assert.False(world.Checks.Failed);

        // A pool that loses count: a connection is open that the pool does not know of.
        var open = pool.Factory.OpenAsync(CancellationToken.None).AsTask();
        RunClock(world, TimeSpan.FromSeconds(1));
        Assert.True(open.IsCompletedSuccessfully);

        world.Checks.Pools.AfterEvent(world);
        Assert.Equal("pool-bounds", world.Checks.Violation?.Invariant);
    }

    [Fact]
    public void PoolBounds_RealPoolAtItsSize_Passes()
    {
        var world = NewWorld();
        var pool = world.Edges[0].PoolFor(0);
        var held = new List<Task<FakeServerConnection>>();
        for (var i = 0; i < world.Options.Pool.Size + 3; i++)
            held.Add(pool.Connections.AcquireAsync(CancellationToken.None).AsTask());
        RunClock(world, TimeSpan.FromMilliseconds(200));
        world.Checks.Pools.AfterEvent(world);
        Assert.Null(world.Checks.Violation);
        Assert.Equal(world.Options.Pool.Size, held.Count(t => t.IsCompletedSuccessfully));
    }

    [Fact]
    public void Budget_OverGrantedBucket_Fails()
    {
        var world = NewWorld();
        var edge = world.Edges[0];
        _ = edge.OpenSession("shop");
        var bucket = edge.Gate.GetTenants().Single(t => t.Name == "shop").GetAccounts()[0].Bucket;
        world.Checks.Budgets.AfterEvent(world);
        RunClock(world, TimeSpan.FromSeconds(1));
        bucket.Charge(world.Options.Tenants[0].BurstRu / 2);
        world.Checks.Budgets.AfterEvent(world);
        Assert.False(world.Checks.Failed);

        // A lease far beyond the tenant's budget, spent at once.
        var budget = world.Options.Tenants[0].BudgetRuPerSecond;
        bucket.Grant(budget * 100, TimeSpan.FromSeconds(10));
        bucket.Charge(budget * 100);
        RunClock(world, TimeSpan.FromSeconds(1));
        world.Checks.Budgets.AfterEvent(world);
        Assert.Equal("budget", world.Checks.Violation?.Invariant);
    }

    private static (SimWorld World, QosScheduler Scheduler, SchedulerWaiter Low, SchedulerWaiter High, SchedulerSlot Held) TwoWaiters()
    {
        var world = NewWorld();
        var scheduler = world.Edges[0].Gate.CreateScheduler("test", 1);
        var holder = scheduler.CreateFlow("holder", 1, 10);
        var lowFlow = scheduler.CreateFlow("low", 1, 10);
        var highFlow = scheduler.CreateFlow("high", 1, 10);
        Assert.True(scheduler.TryAcquire(holder, Priority.Medium, out var held));
        var low = scheduler.Enqueue(lowFlow, Priority.Low);
        var high = scheduler.Enqueue(highFlow, Priority.High);
        _ = world.Sim.SlotWaits.WaitAsync(low);
        _ = world.Sim.SlotWaits.WaitAsync(high);
        return (world, scheduler, low, high, held);
    }

    [Fact]
    public void Priority_LowGrantedWhileHighWaits_Fails()
    {
        var (world, _, low, _, _) = TwoWaiters();
        world.Checks.Priority.BeforeEvent();
        // A broken scheduler hands the slot to the LOW waiter.
        Assert.True(low.TryComplete(WaitOutcome.Granted, default, TimeSpan.Zero, TimeSpan.Zero));
        world.Checks.Priority.AfterEvent();
        Assert.Equal("priority", world.Checks.Violation?.Invariant);
    }

    [Fact]
    public void Priority_RealSchedulerRelease_GrantsHighAndPasses()
    {
        var (world, scheduler, low, high, held) = TwoWaiters();
        world.Checks.Priority.BeforeEvent();
        scheduler.Release(held, 1);
        world.Checks.Priority.AfterEvent();
        Assert.Null(world.Checks.Violation);
        Assert.Equal(WaitOutcome.Granted, high.Outcome);
        Assert.Equal(WaitOutcome.Pending, low.Outcome);
    }

    [Fact]
    public void Priority_LowTakesFreeSlotWhileHighWaits_Fails()
    {
        var (world, scheduler, _, _, _) = TwoWaiters();
        // A scheduler that lets a LOW request barge into a free slot past a waiting HIGH one.
        world.Checks.Priority.OnSlotTaken(scheduler, Priority.Low);
        Assert.Equal("priority", world.Checks.Violation?.Invariant);
    }

    [Fact]
    public void RequestAnswered_RequestNeverAnswered_FailsAtEnd()
    {
        var world = NewWorld();
        var session = world.Edges[0].OpenSession("shop");
        var answered = world.Checks.Requests.Issue("shop.c0", session, "SELECT 1");
        world.Checks.Requests.Answer(answered, Reply.Ok);
        world.Checks.Requests.Finish(answered);
        world.Checks.Requests.CheckAllDone();
        Assert.False(world.Checks.Failed);

        _ = world.Checks.Requests.Issue("shop.c0", session, "SELECT 2");
        world.Checks.Requests.CheckAllDone();
        Assert.Equal("request-answered", world.Checks.Violation?.Invariant);
    }

    [Fact]
    public void RequestAnswered_NoReplyWithinDeadline_Fails()
    {
        var world = NewWorld();
        var session = world.Edges[0].OpenSession("shop");
        _ = world.Checks.Requests.Issue("shop.c0", session, "SELECT 1");
        RunClock(world, TimeSpan.FromSeconds(2));
        world.Checks.Requests.CheckDeadline(TimeSpan.FromSeconds(5));
        Assert.False(world.Checks.Failed);
        RunClock(world, TimeSpan.FromSeconds(4));
        world.Checks.Requests.CheckDeadline(TimeSpan.FromSeconds(5));
        Assert.Equal("request-answered", world.Checks.Violation?.Invariant);
    }

    [Fact]
    public void RequestAnswered_AnsweredTwice_Fails()
    {
        var world = NewWorld();
        var session = world.Edges[0].OpenSession("shop");
        var id = world.Checks.Requests.Issue("shop.c0", session, "SELECT 1");
        world.Checks.Requests.Answer(id, Reply.Ok);
        world.Checks.Requests.Answer(id, Reply.Ok);
        Assert.Equal("request-answered", world.Checks.Violation?.Invariant);
    }

    private static async Task WriteStateAsync<T>(SimWorld world, GrainKey key, T state, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> json)
    {
        await using var tx = await world.Store.LockAsync(key, CancellationToken.None);
        await tx.CommitAsync(JsonSerializer.SerializeToUtf8Bytes(state, json), world.Sim.Clock.GetUtcNow(), CancellationToken.None);
    }

    [Fact]
    public async Task LeaseCapacity_BackendSlotsDoubleLeased_Fails()
    {
        var world = NewWorld();
        var backend = world.Options.Policy.Backends[0];
        var until = world.Sim.Clock.GetUtcNow() + TimeSpan.FromSeconds(5);
        // A grain that leased the whole backend to two edges at once.
        var state = new CapacityState
        {
            LastSequence = 2,
            Edges =
            [
                new EdgeSlotEntry { Edge = new EdgeId("edge0"), LastSeen = world.Sim.Clock.GetUtcNow(), Leases = [new GrantedSlots(1, backend.MaxConnections, until)] },
                new EdgeSlotEntry { Edge = new EdgeId("edge1"), LastSeen = world.Sim.Clock.GetUtcNow(), Leases = [new GrantedSlots(2, backend.MaxConnections, until)] },
            ],
        };
        await WriteStateAsync(world, new GrainKey(PolicyGrainFactory.CapacityLeaseType, backend.Backend.Value), state, GrainStateJsonContext.Default.CapacityState);
        world.Checks.OnSiloExchange(world.Silos[0]);
        Assert.Equal("lease-capacity", world.Checks.Violation?.Invariant);
    }

    [Fact]
    public async Task LeaseCapacity_TenantRateOverLeased_Fails()
    {
        var world = NewWorld();
        var tenant = world.Options.Policy.Tenants[0];
        var now = world.Sim.Clock.GetUtcNow();
        // Two exchanges served from a stale state: each edge got the whole budget.
        await WriteStateAsync(world, new GrainKey(PolicyGrainFactory.TenantBudgetType, tenant.Tenant.Value), OverLeased(tenant, now), GrainStateJsonContext.Default.TenantBudgetState);
        world.Checks.OnSiloExchange(world.Silos[0]);
        Assert.Equal("lease-capacity", world.Checks.Violation?.Invariant);
    }

    private static TenantBudgetState OverLeased(TenantPolicy tenant, DateTimeOffset now)
    {
        // Built through the real logic: one edge's exchange, then the same lease copied to a second edge.
        var report = new TenantUsageReport { Tenant = tenant.Tenant, DemandRuPerSecond = tenant.RuPerSecond * 10 };
        var config = PolicyConfig.Empty with { Tenants = [tenant], LeasePeriod = TimeSpan.FromSeconds(5) };
        var (state, _) = TenantBudgetLogic.Exchange(TenantBudgetState.Initial, config, tenant.Tenant, new TenantExchange(new EdgeId("edge0"), report, []), now);
        var first = state.Edges.Single();
        return state with { Edges = [first, first with { Edge = new EdgeId("edge1") }] };
    }

    [Fact]
    public void Determinism_WorkOffTheDriverThread_IsAnEscape()
    {
        var clock = new SimClock();
        clock.BindToCurrentThread();
        var thread = new Thread(() => clock.After(TimeSpan.FromSeconds(1), () => { }));
        thread.Start();
        thread.Join();
        Assert.NotNull(clock.Escape);
    }

    [Fact]
    public void Determinism_TraceHash_ChangesWithAnyLine()
    {
        var clock = new SimClock();
        var a = new SimTrace(clock, null);
        var b = new SimTrace(clock, null);
        a.Write("edge0", "granted slot to s1");
        b.Write("edge0", "granted slot to s2");
        Assert.NotEqual(a.Hash, b.Hash);
    }
}
