using MProxy.Abstractions.Policy;
using MProxy.Grains.Budgets;

namespace MProxy.Grains.Tests.Budgets;

/// <summary>
/// Seeded random scenarios (demand swings, edges arriving, crashing, partitioned and healing, replies
/// lost) against the tenant budget, with every edge running a local token bucket on the lease it
/// holds and spending as much as its demand allows. The property: over every window, what all edges
/// spent together is at most budget × window + burst.
/// </summary>
public sealed class TenantBudgetPropertyTests
{
    private const double Budget = 100;
    private const double Burst = 40;
    private const double Step = 0.1;
    private const int Steps = 1500;
    private static readonly TenantId Tenant = new("acme");
    private static readonly DateTimeOffset Start = new(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);

    private static readonly PolicyConfig Config = new()
    {
        Version = 1,
        LeasePeriod = TimeSpan.FromSeconds(4),
        ExchangeInterval = TimeSpan.FromSeconds(1),
        EdgeLiveness = TimeSpan.FromSeconds(3),
        Tenants = [new TenantPolicy(Tenant, Budget, Burst)],
    };

    private sealed class SimEdge(EdgeId id, double firstExchange)
    {
        public EdgeId Id { get; } = id;
        public bool Crashed { get; set; }
        public bool Partitioned { get; set; }
        public double NextExchange { get; set; } = firstExchange;
        public TenantLease? Lease { get; set; }
        public double Tokens { get; set; }
        public double Demand { get; set; }
    }

    private static double RandomDemand(Random random) => random.Next(4) switch
    {
        0 => 0,
        1 => random.NextDouble() * 30,
        2 => 30 + (random.NextDouble() * 100),
        _ => 100 + (random.NextDouble() * 500),
    };

    public static TheoryData<int> Seeds()
    {
        var data = new TheoryData<int>();
        for (var seed = 1; seed <= 24; seed++)
            data.Add(seed);
        return data;
    }

    [Theory]
    [MemberData(nameof(Seeds))]
    public void Exchange_RandomDemandAndMembership_SpendInAnyWindowStaysWithinBudgetPlusBurst(int seed)
    {
        var random = new Random(seed);
        var state = TenantBudgetState.Initial;
        var edges = new List<SimEdge>();
        var nextId = 0;
        var spent = new double[Steps + 1]; // prefix sums
        double totalSpent = 0;

        for (var step = 0; step < Steps; step++)
        {
            var t = step * Step;
            var now = Start + TimeSpan.FromSeconds(t);

            if (edges.Count(e => !e.Crashed) < 2 || random.NextDouble() < 0.01)
                edges.Add(new SimEdge(new EdgeId($"edge-{nextId++}"), t + random.NextDouble()) { Demand = RandomDemand(random) });
            foreach (var edge in edges)
            {
                if (edge.Crashed)
                    continue;
                var roll = random.NextDouble();
                if (roll < 0.002)
                    edge.Crashed = true;
                else if (roll < 0.006)
                    edge.Partitioned = !edge.Partitioned;
                if (random.NextDouble() < 0.02)
                    edge.Demand = RandomDemand(random);
            }

            foreach (var edge in edges)
            {
                if (edge.Crashed || edge.Partitioned || edge.NextExchange > t)
                    continue;
                edge.NextExchange = t + 1 + ((random.NextDouble() - 0.5) * 0.2);
                var report = new TenantUsageReport { Tenant = Tenant, DemandRuPerSecond = edge.Demand, AppliedLeaseSequence = edge.Lease?.Sequence ?? 0 };
                (state, var reply) = TenantBudgetLogic.Exchange(state, Config, Tenant, new TenantExchange(edge.Id, report, []), now);
                Assert.True(state.Edges.Sum(e => TenantBudgetLogic.Committed(e).RuPerSecond) <= Budget + 1e-6, $"seed {seed}: committed rates exceed the budget at {t:0.0}s");
                Assert.True(state.Edges.Sum(e => TenantBudgetLogic.Committed(e).BurstRu) <= Burst + 1e-6, $"seed {seed}: committed bursts exceed the burst at {t:0.0}s");
                if (random.NextDouble() < 0.1)
                    continue; // the reply is lost: the edge keeps the lease it had
                edge.Lease = reply.Lease;
                edge.Tokens = Math.Min(edge.Tokens, reply.Lease.BurstRu);
            }

            double stepSpend = 0;
            foreach (var edge in edges)
            {
                if (edge.Crashed || edge.Lease is not { } lease || now >= lease.ValidUntil)
                {
                    edge.Tokens = 0;
                    continue;
                }
                edge.Tokens = Math.Min(lease.BurstRu, edge.Tokens + (lease.RuPerSecond * Step));
                var spend = Math.Min(edge.Tokens, edge.Demand * Step);
                edge.Tokens -= spend;
                stepSpend += spend;
            }
            totalSpent += stepSpend;
            spent[step + 1] = totalSpent;
        }

        for (var i = 0; i < Steps; i++)
            for (var j = i + 1; j <= Steps; j++)
            {
                var window = (j - i) * Step;
                var allowed = (Budget * window) + Burst + 1e-6;
                if (spent[j] - spent[i] > allowed)
                    Assert.Fail($"seed {seed}: {spent[j] - spent[i]:0.###} RU spent in [{i * Step:0.0}s, {j * Step:0.0}s), allowed {allowed:0.###}");
            }
        // The scenario must actually press against the budget, or the property proves nothing.
        Assert.True(totalSpent > Budget * Steps * Step * 0.3, $"seed {seed}: only {totalSpent:0} RU spent; the scenario is too idle");
    }
}
