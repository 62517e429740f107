using Microsoft.Extensions.Logging.Abstractions;
using MProxy.Abstractions.Policy;
using MProxy.Edge.Policy;
using MProxy.Grains.Exchange;
using MProxy.TestSupport;

namespace MProxy.Edge.Tests.Policy;

public sealed class PolicyClientTests
{
    private static readonly TenantId Acme = new("acme");

    private static CancellationToken Token => TestContext.Current.CancellationToken;

    private static PolicyClient Client(IPolicyTier tier, TimeProvider time, string edge = "edge-1", double floor = 1, int seed = 42) =>
        new(tier, new PolicyClientOptions { EdgeId = edge, LocalShareFloorRuPerSecond = floor, JitterSeed = seed }, time, NullLogger<PolicyClient>.Instance);

    /// <summary>Answers every exchange with a lease of 30 RU/s (burst 12) valid 10 s, out of a 100 RU/s budget shared by 4 edges.</summary>
    private static Func<PolicyExchangeRequest, PolicyExchangeResponse> LeaseOf30(ManualTimeProvider time, TimeSpan? serverClockOffset = null) => request =>
    {
        var serverNow = time.GetUtcNow() + (serverClockOffset ?? TimeSpan.Zero);
        return new PolicyExchangeResponse
        {
            ConfigVersion = 3,
            ServerTime = serverNow,
            LiveEdges = 4,
            Leases = [.. request.Tenants.Select(t => new TenantLease
            {
                Tenant = t.Tenant,
                Sequence = request.Sequence,
                RuPerSecond = 30,
                BurstRu = 12,
                ValidUntil = serverNow + TimeSpan.FromSeconds(10),
                BudgetRuPerSecond = 100,
                BudgetBurstRu = 40,
                LiveEdges = 2,
            })],
        };
    };

    [Fact]
    public async Task TryGetAllowance_BeforeTierSpoke_ReturnsFalseSoLocalDefaultApplies()
    {
        var time = new ManualTimeProvider();
        var tier = new ScriptedPolicyTier { Down = true };
        using var client = Client(tier, time);
        client.RecordAdmitted("acme", 5);

        await client.ExchangeOnceAsync(Token);

        Assert.False(client.TryGetAllowance("acme", out _));
        Assert.Equal(PolicyClientState.Degraded, client.Status.State);
    }

    [Fact]
    public async Task ExchangeOnceAsync_TierAnswers_AllowanceIsTheLease()
    {
        var time = new ManualTimeProvider();
        var tier = new ScriptedPolicyTier { Answer = LeaseOf30(time) };
        using var client = Client(tier, time);
        client.RecordAdmitted("acme", 5);

        var delay = await client.ExchangeOnceAsync(Token);

        Assert.True(client.TryGetAllowance("acme", out var allowance));
        Assert.Equal(new TenantAllowance(30, 12, AllowanceSource.Lease, allowance.Version, time.GetUtcNow() + TimeSpan.FromSeconds(10)), allowance);
        Assert.Equal(PolicyClientState.Connected, client.Status.State);
        Assert.Equal(3, client.Status.ConfigVersion);
        Assert.Equal(TimeSpan.FromSeconds(1), delay);
    }

    [Fact]
    public async Task ExchangeOnceAsync_ServerClockAhead_LeaseExpiryIsRebasedOnLocalClock()
    {
        var time = new ManualTimeProvider();
        var tier = new ScriptedPolicyTier { Answer = LeaseOf30(time, TimeSpan.FromHours(1)) };
        using var client = Client(tier, time);
        client.RecordAdmitted("acme", 5);

        await client.ExchangeOnceAsync(Token);

        Assert.True(client.TryGetAllowance("acme", out var allowance));
        Assert.Equal(time.GetUtcNow() + TimeSpan.FromSeconds(10), allowance.ValidUntil);
    }

    [Fact]
    public async Task ExchangeOnceAsync_TierDown_SpendsLeaseUntilExpiryThenLocalShare()
    {
        var time = new ManualTimeProvider();
        var tier = new ScriptedPolicyTier { Answer = LeaseOf30(time) };
        using var client = Client(tier, time);
        var states = new List<PolicyClientState>();
        client.StatusChanged += s => states.Add(s.State);
        client.RecordAdmitted("acme", 5);
        await client.ExchangeOnceAsync(Token);

        tier.Down = true;
        time.Advance(TimeSpan.FromSeconds(5));
        await client.ExchangeOnceAsync(Token);
        Assert.True(client.TryGetAllowance("acme", out var during));
        Assert.Equal(AllowanceSource.Lease, during.Source);
        Assert.Equal(30, during.RuPerSecond);
        Assert.Equal(PolicyClientState.Retrying, client.Status.State);

        time.Advance(TimeSpan.FromSeconds(5));
        await client.ExchangeOnceAsync(Token);
        Assert.True(client.TryGetAllowance("acme", out var after));
        Assert.Equal(AllowanceSource.LocalShare, after.Source);
        Assert.Equal(25, after.RuPerSecond); // 100 RU/s ÷ 4 live edges in the last membership view
        Assert.Equal(25, after.BurstRu);
        Assert.NotEqual(during.Version, after.Version);
        Assert.True(client.IsDegraded);
        Assert.Equal(1, client.Status.DegradedTenants);
        Assert.Equal([PolicyClientState.Connected, PolicyClientState.Retrying, PolicyClientState.Degraded], states);
    }

    [Fact]
    public async Task TryGetAllowance_LocalShareBelowFloor_ReturnsFloor()
    {
        var time = new ManualTimeProvider();
        var tier = new ScriptedPolicyTier { Answer = LeaseOf30(time) };
        using var client = Client(tier, time, floor: 40);
        client.RecordAdmitted("acme", 5);
        await client.ExchangeOnceAsync(Token);
        tier.Down = true;

        time.Advance(TimeSpan.FromSeconds(11));

        Assert.True(client.TryGetAllowance("acme", out var allowance));
        Assert.Equal(AllowanceSource.LocalShare, allowance.Source);
        Assert.Equal(40, allowance.RuPerSecond);
    }

    [Fact]
    public async Task ExchangeOnceAsync_TierComesBack_RecoversLeaseWithoutRestart()
    {
        var time = new ManualTimeProvider();
        var tier = new ScriptedPolicyTier { Answer = LeaseOf30(time) };
        using var client = Client(tier, time);
        var states = new List<PolicyClientState>();
        client.RecordAdmitted("acme", 5);
        await client.ExchangeOnceAsync(Token);
        tier.Down = true;
        time.Advance(TimeSpan.FromSeconds(11));
        await client.ExchangeOnceAsync(Token);
        Assert.True(client.IsDegraded);
        client.StatusChanged += s => states.Add(s.State);

        tier.Down = false;
        await client.ExchangeOnceAsync(Token);

        Assert.True(client.TryGetAllowance("acme", out var allowance));
        Assert.Equal(AllowanceSource.Lease, allowance.Source);
        Assert.Equal(0, client.Status.ConsecutiveFailures);
        Assert.Equal([PolicyClientState.Connected], states);
    }

    [Fact]
    public async Task ExchangeOnceAsync_ConsecutiveFailures_BackOffExponentiallyWithJitterUpToMax()
    {
        var time = new ManualTimeProvider();
        var tier = new ScriptedPolicyTier { Down = true };
        using var client = Client(tier, time);

        var delays = new List<TimeSpan>();
        for (var i = 0; i < 8; i++)
            delays.Add(await client.ExchangeOnceAsync(Token));

        for (var i = 0; i < delays.Count; i++)
        {
            var ceiling = TimeSpan.FromMilliseconds(Math.Min(10_000, 500 * Math.Pow(2, i)));
            Assert.InRange(delays[i], ceiling / 2, ceiling);
        }
        Assert.True(delays[4] > delays[0] * 4);

        using var twin = Client(new ScriptedPolicyTier { Down = true }, time);
        var twinDelays = new List<TimeSpan>();
        for (var i = 0; i < 8; i++)
            twinDelays.Add(await twin.ExchangeOnceAsync(Token));
        Assert.Equal(delays, twinDelays); // same seed, same jitter: replayable
    }

    [Fact]
    public async Task ExchangeOnceAsync_FailedExchange_UsageIsCarriedIntoTheNextOne()
    {
        var time = new ManualTimeProvider();
        var tier = new ScriptedPolicyTier { Down = true };
        using var client = Client(tier, time);
        client.RecordAdmitted("acme", 10);
        client.RecordAdmitted("acme", 10);
        client.RecordRefused("acme", 7, shed: false);
        client.RecordExecution("acme", 0xabc, 10, 3, "SELECT 1");
        await client.ExchangeOnceAsync(Token);

        client.RecordAdmitted("acme", 10);
        client.RecordRefused("acme", 7, shed: true);
        client.RecordExecution("acme", 0xabc, 30, 9);
        tier.Down = false;
        tier.Answer = LeaseOf30(time);
        time.Advance(TimeSpan.FromSeconds(1));
        await client.ExchangeOnceAsync(Token);

        var sent = tier.Requests[^1];
        var usage = Assert.Single(sent.Tenants);
        Assert.Equal(30, usage.UsedRu);
        Assert.Equal(3, usage.Admitted);
        Assert.Equal(1, usage.Throttled);
        Assert.Equal(1, usage.Shed);
        Assert.True(usage.DemandRuPerSecond > 0);
        var fingerprint = Assert.Single(sent.Fingerprints);
        Assert.Equal(2, fingerprint.Count);
        Assert.Equal(40, fingerprint.TotalRu);
        Assert.Equal(30, fingerprint.MaxRu);
        Assert.Equal("SELECT 1", fingerprint.Sample);

        time.Advance(TimeSpan.FromSeconds(1));
        await client.ExchangeOnceAsync(Token);
        Assert.Equal(0, tier.Requests[^1].Tenants[0].UsedRu);
        Assert.Empty(tier.Requests[^1].Fingerprints);
        Assert.Equal(sent.Sequence, tier.Requests[^1].Tenants[0].AppliedLeaseSequence); // the scripted lease carries the request's sequence
    }

    [Fact]
    public async Task ExchangeOnceAsync_BudgetHeldQueriesBack_ReportsTheTenantConstrainedForThatInterval()
    {
        var time = new ManualTimeProvider();
        var tier = new ScriptedPolicyTier { Answer = LeaseOf30(time) };
        using var client = Client(tier, time);
        var constrained = new List<bool>();
        async Task ExchangeAsync()
        {
            time.Advance(TimeSpan.FromSeconds(1));
            await client.ExchangeOnceAsync(Token);
            constrained.Add(Assert.Single(tier.Requests[^1].Tenants).Constrained);
        }

        client.RecordAdmitted("acme", 10);
        await ExchangeAsync();                     // served freely
        client.RecordBudgetWait("acme");
        client.RecordAdmitted("acme", 10);
        await ExchangeAsync();                     // a query waited for budget
        client.RecordAdmitted("acme", 10);
        await ExchangeAsync();                     // free again
        client.RecordRefused("acme", 7, shed: true);
        await ExchangeAsync();                     // shed for overload: not the budget
        client.RecordRefused("acme", 7, shed: false);
        await ExchangeAsync();                     // refused for budget
        client.ReportDebt("acme", 12);
        await ExchangeAsync();                     // in debt
        client.ReportDebt("acme", 0);
        await ExchangeAsync();

        Assert.Equal([false, true, false, false, true, true, false], constrained);
    }

    [Fact]
    public async Task TryGetVerdict_VerdictPublished_HoldsUntilItsExpiry()
    {
        var time = new ManualTimeProvider();
        var verdict = new RunawayVerdict { Tenant = Acme, Fingerprint = new FingerprintId(7), Action = RunawayAction.Reject, ExpiresAt = time.GetUtcNow() + TimeSpan.FromSeconds(30) };
        var tier = new ScriptedPolicyTier { Answer = r => LeaseOf30(time)(r) with { Verdicts = [verdict] } };
        using var client = Client(tier, time);
        await client.ExchangeOnceAsync(Token);
        tier.Down = true;

        Assert.True(client.TryGetVerdict("acme", 7, out var held));
        Assert.Equal(RunawayAction.Reject, held.Action);
        time.Advance(TimeSpan.FromSeconds(30));
        Assert.False(client.TryGetVerdict("acme", 7, out _));
    }

    [Fact]
    public async Task ExecuteAsync_Running_ExchangesOncePerTickOnTheInjectedClock()
    {
        var time = new ManualTimeProvider();
        var tier = new ScriptedPolicyTier { Answer = LeaseOf30(time) };
        using var client = Client(tier, time);
        client.RecordAdmitted("acme", 1);

        await client.StartAsync(Token);
        await tier.Calls.ReadAsync(Token);
        Assert.False(tier.Calls.TryRead(out _));
        // Wait for the loop's delay (due one interval from now), not just any timer: the exchange's
        // call-timeout timer is armed first, and advancing the clock before the delay is armed would
        // push the next exchange out of reach (the test then hung).
        var nextExchange = time.GetUtcNow() + TimeSpan.FromSeconds(1);
        while (time.NextDue != nextExchange)
            await Task.Yield();
        time.Advance(TimeSpan.FromSeconds(1));
        var second = await tier.Calls.ReadAsync(Token);
        await client.StopAsync(Token);

        Assert.Equal(2, second.Sequence);
        Assert.Equal(new EdgeId("edge-1"), second.Edge);
    }

    [Fact]
    public async Task ExchangeOnceAsync_EmbeddedTierTwoBusyEdges_ShareTheTenantBudget()
    {
        var time = new ManualTimeProvider();
        await using var tier = new EmbeddedPolicyTier(new PolicyConfig { Version = 1, Tenants = [new TenantPolicy(Acme, 100, 20)] }, time);
        using var first = Client(tier, time, "edge-1");
        using var second = Client(tier, time, "edge-2");

        for (var tick = 0; tick < 5; tick++)
        {
            first.RecordAdmitted("acme", 500);
            second.RecordAdmitted("acme", 500);
            await first.ExchangeOnceAsync(Token);
            await second.ExchangeOnceAsync(Token);
            time.Advance(TimeSpan.FromSeconds(1));
        }

        Assert.True(first.TryGetAllowance("acme", out var a));
        Assert.True(second.TryGetAllowance("acme", out var b));
        Assert.Equal(50, a.RuPerSecond, 6);
        Assert.Equal(50, b.RuPerSecond, 6);
        Assert.Equal(2, first.Status.LiveEdges);
        Assert.Equal(10, a.BurstRu, 6);
    }
}

public sealed class PolicyClientFingerprintCapTests
{
    [Fact]
    public async Task ExchangeOnceAsync_MoreShapesThanCap_ReportsTheCostliestPerExecution()
    {
        var time = new ManualTimeProvider();
        var tier = new ScriptedPolicyTier { Answer = _ => new PolicyExchangeResponse { ServerTime = time.GetUtcNow() } };
        using var client = new PolicyClient(tier, new PolicyClientOptions { EdgeId = "edge-1", MaxFingerprintsPerExchange = 3 }, time, NullLogger<PolicyClient>.Instance);
        for (ulong shape = 1; shape <= 10; shape++)
            client.RecordExecution("acme", shape, ru: shape * 10, latencyMs: 1);

        await client.ExchangeOnceAsync(TestContext.Current.CancellationToken);

        Assert.Equal([8UL, 9UL, 10UL], tier.Requests[0].Fingerprints.Select(f => f.Fingerprint.Value).Order());
    }
}
