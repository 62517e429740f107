using MProxy.Abstractions.Policy;
using MProxy.Grains.Budgets;

namespace MProxy.Grains.Tests.Budgets;

public sealed class TenantBudgetLogicTests
{
    private static readonly TenantId Tenant = new("acme");
    private static readonly EdgeId A = new("edge-a");
    private static readonly EdgeId B = new("edge-b");
    private static readonly DateTimeOffset Start = new(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);

    private static readonly PolicyConfig Config = new()
    {
        Version = 1,
        LeasePeriod = TimeSpan.FromSeconds(5),
        ExchangeInterval = TimeSpan.FromSeconds(1),
        EdgeLiveness = TimeSpan.FromSeconds(3),
        Tenants = [new TenantPolicy(Tenant, 100, 50)],
    };

    private sealed class Edge(EdgeId id)
    {
        public EdgeId Id { get; } = id;
        public TenantLease? Lease { get; set; }
        public double Demand { get; set; }
        public bool Constrained { get; set; }

        public TenantExchange Exchange() => new(Id, new TenantUsageReport { Tenant = Tenant, DemandRuPerSecond = Demand, Constrained = Constrained, AppliedLeaseSequence = Lease?.Sequence ?? 0 }, []);
    }

    private static TenantBudgetState Call(TenantBudgetState state, Edge edge, DateTimeOffset now)
    {
        var (next, reply) = TenantBudgetLogic.Exchange(state, Config, Tenant, edge.Exchange(), now);
        edge.Lease = reply.Lease;
        return next;
    }

    private static double CommittedRate(TenantBudgetState state) => state.Edges.Sum(e => TenantBudgetLogic.Committed(e).RuPerSecond);

    [Fact]
    public void Exchange_SingleBusyEdge_GetsWholeBudgetAndBurst()
    {
        var a = new Edge(A) { Demand = 500 };
        var state = Call(TenantBudgetState.Initial, a, Start);

        Assert.Equal(100, a.Lease!.RuPerSecond, 6);
        Assert.Equal(50, a.Lease.BurstRu, 6);
        Assert.Equal(Start + Config.LeasePeriod, a.Lease.ValidUntil);
        Assert.Equal(1, a.Lease.LiveEdges);
        Assert.False(a.Lease.Unlimited);
        Assert.Equal(100, a.Lease.BudgetRuPerSecond);
        Assert.Single(state.Edges);
    }

    [Fact]
    public void Exchange_UnknownTenantWithoutDefault_GrantsUnlimitedLease()
    {
        var (_, reply) = TenantBudgetLogic.Exchange(TenantBudgetState.Initial, Config, new TenantId("other"),
            new TenantExchange(A, new TenantUsageReport { Tenant = new TenantId("other"), DemandRuPerSecond = 10 }, []), Start);

        Assert.True(reply.Lease.Unlimited);
    }

    [Fact]
    public void Exchange_DefaultTenantPolicy_AppliesToUnlistedTenant()
    {
        var config = Config with { DefaultTenant = new TenantPolicy(new TenantId("*"), 40, 10) };
        var (_, reply) = TenantBudgetLogic.Exchange(TenantBudgetState.Initial, config, new TenantId("other"),
            new TenantExchange(A, new TenantUsageReport { Tenant = new TenantId("other"), DemandRuPerSecond = 1000 }, []), Start);

        Assert.False(reply.Lease.Unlimited);
        Assert.Equal(40, reply.Lease.RuPerSecond, 6);
    }

    [Fact]
    public void Exchange_IdleEdgeShare_IsLentToBusyEdgeAndReclaimedWhenItComesBack()
    {
        var a = new Edge(A) { Demand = 90 };
        var b = new Edge(B) { Demand = 0 };
        var state = TenantBudgetState.Initial;
        var now = Start;
        for (var round = 0; round < 3; round++, now += TimeSpan.FromSeconds(1))
        {
            state = Call(state, a, now);
            state = Call(state, b, now);
        }
        Assert.True(a.Lease!.RuPerSecond > 85, $"busy edge got {a.Lease.RuPerSecond}, expected the idle edge's share lent to it");
        Assert.True(b.Lease!.RuPerSecond < 10, $"idle edge kept {b.Lease.RuPerSecond}");

        b.Demand = 60;
        for (var round = 0; round < 3; round++, now += TimeSpan.FromSeconds(1))
        {
            state = Call(state, b, now);
            state = Call(state, a, now);
            Assert.True(CommittedRate(state) <= 100 + 1e-9);
        }
        Assert.True(b.Lease.RuPerSecond >= 50 - 1e-9, $"returning edge reclaimed only {b.Lease.RuPerSecond} of its fair share 50");
        Assert.True(a.Lease.RuPerSecond <= 50 + 1e-9, $"borrower still has {a.Lease.RuPerSecond}");
    }

    [Fact]
    public void Exchange_ThrottledEdgeWithLittleMeasuredDemand_IsSizedAtLeastItsFairShare()
    {
        // Closed-loop clients on a throttled edge only ask for what they were allowed: measured
        // demand 2 RU/s under a small lease. Without the constrained flag the edge stays at its
        // small share while the other keeps the rest.
        var a = new Edge(A) { Demand = 200 };
        var b = new Edge(B) { Demand = 2 };
        var state = TenantBudgetState.Initial;
        var now = Start;
        for (var round = 0; round < 3; round++, now += TimeSpan.FromSeconds(1))
        {
            state = Call(state, a, now);
            state = Call(state, b, now);
        }
        Assert.True(b.Lease!.RuPerSecond < 11, $"an unconstrained edge asking 2 RU/s got {b.Lease.RuPerSecond}");

        b.Constrained = true; // one exchange to shrink the borrower's lease, one for it to apply it, then the share is free
        for (var round = 0; round < 3; round++, now += TimeSpan.FromSeconds(1))
        {
            state = Call(state, b, now);
            state = Call(state, a, now);
            Assert.True(CommittedRate(state) <= 100 + 1e-9);
        }
        Assert.Equal(50, b.Lease.RuPerSecond, 6);
        Assert.Equal(50, a.Lease!.RuPerSecond, 6);
        Assert.True(state.Edges.Single(e => e.Edge == B).Constrained);
    }

    [Fact]
    public void Exchange_EdgeStopsReporting_ItsShareIsReleasedOnlyWhenItsLeaseExpires()
    {
        var a = new Edge(A) { Demand = 100 };
        var b = new Edge(B) { Demand = 100 };
        var state = TenantBudgetState.Initial;
        var now = Start;
        for (var round = 0; round < 3; round++, now += TimeSpan.FromSeconds(1))
        {
            state = Call(state, a, now);
            state = Call(state, b, now);
        }
        var bExpires = b.Lease!.ValidUntil;
        Assert.Equal(50, a.Lease!.RuPerSecond, 6);

        // b is gone: a keeps asking; while b's lease may still be spent, a cannot have b's share.
        while (now < bExpires)
        {
            state = Call(state, a, now);
            Assert.True(a.Lease.RuPerSecond <= 50 + 1e-9, $"at {now - Start} a got {a.Lease.RuPerSecond} while b's lease was still valid");
            now += TimeSpan.FromSeconds(1);
        }
        state = Call(state, a, now);
        Assert.Equal(100, a.Lease.RuPerSecond, 6);
        Assert.Single(state.Edges);
    }

    [Fact]
    public void Exchange_EdgeReportsDebt_BurstShrinksAndDebtIsTracked()
    {
        var a = new Edge(A) { Demand = 100 };
        var state = Call(TenantBudgetState.Initial, a, Start);
        Assert.Equal(50, a.Lease!.BurstRu, 6);

        var (next, reply) = TenantBudgetLogic.Exchange(state, Config, Tenant,
            new TenantExchange(A, new TenantUsageReport { Tenant = Tenant, DemandRuPerSecond = 100, DebtRu = 30, AppliedLeaseSequence = a.Lease.Sequence }, []),
            Start + TimeSpan.FromSeconds(1));

        Assert.Equal(20, reply.Lease.BurstRu, 6);
        Assert.Equal(30, reply.Lease.TenantDebtRu, 6);
        Assert.Equal(30, TenantBudgetLogic.View(next, Config, Tenant, Start + TimeSpan.FromSeconds(1)).DebtRu, 6);
    }

    [Fact]
    public void Exchange_CountersAndUsage_AccumulateInView()
    {
        var state = TenantBudgetState.Initial;
        for (var i = 0; i < 3; i++)
        {
            (state, _) = TenantBudgetLogic.Exchange(state, Config, Tenant,
                new TenantExchange(A, new TenantUsageReport { Tenant = Tenant, UsedRu = 10, Admitted = 5, Throttled = 2, Shed = 1 }, []),
                Start + TimeSpan.FromSeconds(i));
        }
        var view = TenantBudgetLogic.View(state, Config, Tenant, Start + TimeSpan.FromSeconds(2));

        Assert.Equal(30, view.TotalUsedRu, 6);
        Assert.Equal(15, view.Admitted);
        Assert.Equal(6, view.Throttled);
        Assert.Equal(3, view.Shed);
        Assert.InRange(view.SpendRuPerSecond, 5, 10);
        Assert.Equal(1, view.LiveEdges);
    }

    [Fact]
    public void Exchange_NewVerdicts_ArePublishedUntilTheyExpire()
    {
        var verdict = new RunawayVerdict { Tenant = Tenant, Fingerprint = new FingerprintId(42), Action = RunawayAction.Reject, ExpiresAt = Start + TimeSpan.FromSeconds(10) };
        var (state, reply) = TenantBudgetLogic.Exchange(TenantBudgetState.Initial, Config, Tenant,
            new TenantExchange(A, new TenantUsageReport { Tenant = Tenant }, [verdict]), Start);
        Assert.Equal([verdict], reply.Verdicts);

        (state, reply) = TenantBudgetLogic.Exchange(state, Config, Tenant, new TenantExchange(B, new TenantUsageReport { Tenant = Tenant }, []), Start + TimeSpan.FromSeconds(9));
        Assert.Equal([verdict], reply.Verdicts);

        (_, reply) = TenantBudgetLogic.Exchange(state, Config, Tenant, new TenantExchange(B, new TenantUsageReport { Tenant = Tenant }, []), Start + TimeSpan.FromSeconds(10));
        Assert.Empty(reply.Verdicts);
    }
}
