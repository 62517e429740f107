using MProxy.Abstractions;
using MProxy.Abstractions.ResourceUnits;
using MProxy.Edge.Qos;
using MProxy.Edge.Routing;
using MProxy.TestSupport;

namespace MProxy.Edge.Tests.Qos;

public sealed class QosGateTests : IDisposable
{
    private const double Tolerance = 1e-6;
    private const ulong Fingerprint = 0x1234;
    private readonly ManualTimeProvider _time = new();
    private readonly List<IDisposable> _disposables = [];

    public void Dispose()
    {
        foreach (var d in _disposables)
            d.Dispose();
    }

    private static QosConfig Config(
        ResourceGroupConfig? oltp = null,
        IReadOnlyList<RunawayRuleConfig>? rules = null,
        TenantKeySource from = TenantKeySource.User,
        int maxTenants = 100) => new()
        {
            Enabled = true,
            TenantFrom = from,
            MaxTenants = maxTenants,
            DefaultGroup = "default",
            Groups =
            [
                new ResourceGroupConfig { Name = "default", RuPerSecond = 100, Burst = 100, DebtMax = 100, Priority = Priority.Low },
                oltp ?? new ResourceGroupConfig { Name = "oltp", RuPerSecond = 1000, Burst = 1000, DebtMax = 1000, Priority = Priority.High, Alternatives = ["batch"], StatementTimeout = TimeSpan.FromSeconds(30) },
                new ResourceGroupConfig { Name = "batch", RuPerSecond = 50, Burst = 50, DebtMax = 50, Priority = Priority.Low },
            ],
            Tenants = [new TenantConfig { Name = "shop", Group = "oltp", Match = ["shop_rw", "shop_ro"] }],
            Runaway = new RunawayConfig { Rules = rules ?? [] },
        };

    private QosGate Gate(QosConfig config)
    {
        var gate = new QosGate(config, _time);
        _disposables.Add(gate);
        return gate;
    }

    private static QosSession Session(QosGate gate, string user = "shop") =>
        gate.OpenSession(gate.ResolveTenant(new TenantIdentity(user, "orders", "app")));

    private static QosSlotResult Completed(ValueTask<QosSlotResult> task)
    {
        Assert.True(task.IsCompletedSuccessfully);
        return task.GetAwaiter().GetResult();
    }

    private static QosAdmission Completed(ValueTask<QosAdmission> task)
    {
        Assert.True(task.IsCompletedSuccessfully);
        return task.GetAwaiter().GetResult();
    }

    [Fact]
    public void ResolveTenant_ByUser_MapsMatchesAndSendsUnknownUsersToTheDefaultGroup()
    {
        var gate = Gate(Config());

        var shop = gate.ResolveTenant(new TenantIdentity("shop", "orders", null));
        var alias = gate.ResolveTenant(new TenantIdentity("shop_ro", "orders", null));
        var stranger = gate.ResolveTenant(new TenantIdentity("bob", "orders", null));

        Assert.Same(shop, alias);
        Assert.True(shop.IsConfigured);
        Assert.Equal("oltp", shop.Home.Group.Name);
        Assert.Equal(["oltp", "batch"], shop.Profile.Groups.Select(g => g.Name));
        Assert.Equal("bob", stranger.Name);
        Assert.False(stranger.IsConfigured);
        Assert.Equal("default", stranger.Home.Group.Name);
        Assert.NotSame(stranger.Home.Bucket, gate.ResolveTenant(new TenantIdentity("alice", "orders", null)).Home.Bucket);
    }

    [Fact]
    public void ResolveTenant_ByApplicationName_EmptyNameIsTheUnnamedTenant()
    {
        var gate = Gate(Config(from: TenantKeySource.ApplicationName));

        Assert.Equal("billing", gate.ResolveTenant(new TenantIdentity("u", "d", "billing")).Name);
        Assert.Equal(QosGate.UnnamedTenant, gate.ResolveTenant(new TenantIdentity("u", "d", null)).Name);
        Assert.Equal("u@d", Gate(Config(from: TenantKeySource.UserAndDatabase)).ResolveTenant(new TenantIdentity("u", "d", null)).Name);
        Assert.Equal("d", Gate(Config(from: TenantKeySource.Database)).ResolveTenant(new TenantIdentity("u", "d", null)).Name);
    }

    [Fact]
    public void ResolveTenant_PastMaxTenants_UnknownTenantsShareTheOverflowTenant()
    {
        var gate = Gate(Config(maxTenants: 2));
        gate.ResolveTenant(new TenantIdentity("a", "d", null));
        gate.ResolveTenant(new TenantIdentity("b", "d", null));

        var c = gate.ResolveTenant(new TenantIdentity("c", "d", null));
        var e = gate.ResolveTenant(new TenantIdentity("e", "d", null));
        var shop = gate.ResolveTenant(new TenantIdentity("shop", "d", null));

        Assert.Equal(QosGate.OverflowTenant, c.Name);
        Assert.Same(c, e);
        Assert.Equal("shop", shop.Name); // configured tenants are always tracked
    }

    [Fact]
    public void Statement_FullLifecycle_ChargesBaseLatencyAndBytesAndReleasesTheSlotWithItsRu()
    {
        var gate = Gate(Config());
        using var scheduler = gate.CreateScheduler("orders", 1);
        var session = Session(gate);
        var bucket = session.Tenant.Home.Bucket;

        var admission = session.Admit(new QueryHints(), Fingerprint, RuKind.Read, inTransaction: false);
        Assert.True(admission.IsAdmitted);
        Assert.Equal(Priority.High, admission.Priority);
        Assert.Equal(TimeSpan.FromSeconds(30), admission.StatementTimeout);
        Assert.Equal(999, bucket.Balance, Tolerance);
        Assert.True(Completed(session.AcquireSlotAsync(scheduler, TimeSpan.FromSeconds(5), CancellationToken.None)).IsGranted);
        session.Start(RuWeights.Default);

        _time.Advance(TimeSpan.FromMilliseconds(100));
        session.AddBytes(read: 8192, written: 0);
        var tick = session.Tick();
        Assert.Equal(50 + 2, tick.Ru, Tolerance);
        Assert.Equal(1000 - 52, bucket.Balance, Tolerance); // refilled to the burst meanwhile, then charged

        _time.Advance(TimeSpan.FromMilliseconds(20));
        var done = session.Complete();
        Assert.Equal(RuFormula.Read(RuWeights.Default, 8192, 120), done.Ru, Tolerance);
        Assert.Equal(TimeSpan.FromMilliseconds(120), done.Elapsed);
        session.ReleaseSlot();

        var flow = session.Tenant.Home.FlowFor(scheduler);
        Assert.Equal(done.Ru, scheduler.GetFlowStats(flow).RuServed, Tolerance);
        Assert.Equal(0, scheduler.GetStats().Busy);
        var cost = Assert.Single(gate.Fingerprints.Snapshot().Top);
        Assert.Equal(Fingerprint, cost.Fingerprint);
        Assert.Equal(done.Ru, cost.TotalRu, Tolerance);
        Assert.Equal(done.Ru, session.Tenant.Home.RuCharged, Tolerance);
    }

    [Fact]
    public void Statement_NeverEnding_DrainsTheBudgetWhileInFlight()
    {
        var gate = Gate(Config(oltp: new ResourceGroupConfig { Name = "oltp", RuPerSecond = 100, Burst = 100, DebtMax = 1000 }));
        var session = Session(gate);
        var other = gate.OpenSession(session.Tenant);
        session.Admit(new QueryHints(), Fingerprint, RuKind.Read, false);
        session.Start(RuWeights.Default);

        for (var i = 0; i < 5; i++)
        {
            _time.Advance(TimeSpan.FromSeconds(1));
            Assert.Equal(0, gate.Tick());
        }

        Assert.True(session.IsRunning);
        Assert.Equal(-1000, session.Tenant.Home.Bucket.Balance, Tolerance); // 500 RU/s of latency against 100 RU/s of refill, down to the debt bound
        Assert.True(session.Tenant.Home.Bucket.TakeUsage().Forgiven > 0);
        var refused = other.Admit(new QueryHints(), Fingerprint, RuKind.Read, false);
        Assert.False(refused.IsAdmitted);
        Assert.Equal(QosSqlState.ResourceLimit, refused.Rejection.SqlState);
    }

    [Fact]
    public void Admit_BucketDeepInDebt_RefusesWith53400AndAMessageNamingTenantLimitAndRetry()
    {
        var gate = Gate(Config());
        var session = Session(gate);
        session.Tenant.Home.Bucket.Charge(1500); // 1000 burst, 500 into debt: half a second at 1000 RU/s

        var admission = session.Admit(new QueryHints(), Fingerprint, RuKind.Write, false);

        Assert.False(admission.IsAdmitted);
        Assert.False(admission.MayWait);
        Assert.Equal(QosRejectReason.BudgetExhausted, admission.Rejection.Reason);
        Assert.Equal("53400", admission.Rejection.SqlState);
        Assert.Equal(TimeSpan.FromMilliseconds(500), admission.Rejection.RetryAfter);
        var message = admission.Rejection.FormatMessage();
        Assert.StartsWith("mproxy: RU budget exhausted for tenant 'shop'", message, StringComparison.Ordinal);
        Assert.Contains("resource group 'oltp'", message, StringComparison.Ordinal);
        Assert.Contains("1000 RU/s", message, StringComparison.Ordinal);
        Assert.EndsWith("retry after 500 ms", message, StringComparison.Ordinal);
        Assert.Equal(1, session.Tenant.Home.BudgetRefused);
        Assert.Throws<InvalidOperationException>(() => session.Start(RuWeights.Default));
    }

    [Fact]
    public async Task AdmitAsync_ShortDebt_WaitsItOutOnTheClock()
    {
        var gate = Gate(Config());
        var session = Session(gate);
        session.Tenant.Home.Bucket.Charge(1050); // 50 RU of debt: 50 ms, within the 100 ms budget wait

        var pending = session.AdmitAsync(new QueryHints(), Fingerprint, RuKind.Read, false, CancellationToken.None);
        Assert.False(pending.IsCompleted);
        _time.Advance(TimeSpan.FromMilliseconds(50));
        var admission = await pending;

        Assert.True(admission.IsAdmitted);
        Assert.Equal(1, session.Tenant.Home.BudgetWaits);
        Assert.Equal(1, session.Tenant.Home.Admitted);
    }

    [Fact]
    public void RetryBudget_WaitersAreAdmittedInTheOrderTheyArrived()
    {
        var gate = Gate(Config());
        var first = Session(gate);
        var second = Session(gate);
        first.Tenant.Home.Bucket.Charge(1050); // 50 ms of debt
        Assert.True(first.Admit(new QueryHints(), Fingerprint, RuKind.Read, false).MayWait);
        Assert.True(second.Admit(new QueryHints(), Fingerprint, RuKind.Read, false).MayWait);
        _time.Advance(TimeSpan.FromMilliseconds(50));

        var secondEarly = second.RetryBudget();
        Assert.False(secondEarly.IsAdmitted, "the later waiter asked first and went first");
        Assert.True(secondEarly.MayWait);
        Assert.True(first.RetryBudget().IsAdmitted);
        _time.Advance(secondEarly.Rejection.RetryAfter);
        Assert.True(second.RetryBudget().IsAdmitted);
    }

    [Fact]
    public void Dispose_WhileWaitingForBudget_LeavesTheLine()
    {
        var gate = Gate(Config());
        var leaver = Session(gate);
        var next = Session(gate);
        leaver.Tenant.Home.Bucket.Charge(1050);
        Assert.True(leaver.Admit(new QueryHints(), Fingerprint, RuKind.Read, false).MayWait);
        Assert.True(next.Admit(new QueryHints(), Fingerprint, RuKind.Read, false).MayWait);
        Assert.Equal(2, next.Tenant.Home.Bucket.Waiting);

        leaver.Dispose();

        Assert.Equal(1, next.Tenant.Home.Bucket.Waiting);
        _time.Advance(TimeSpan.FromMilliseconds(50));
        Assert.True(next.RetryBudget().IsAdmitted);
    }

    [Fact]
    public void RetryBudget_WaitsOutItsWholeAllowance_ThenRefusesWithTheTimeWaited()
    {
        // maxBudgetWaitMs is 100 (the default). A statement is refused when its allowance is up, not
        // as soon as other statements' charges push the projected wait past it.
        var gate = Gate(Config());
        var session = Session(gate);
        session.Tenant.Home.Bucket.Charge(1090); // 90 ms of debt
        var first = session.Admit(new QueryHints(), Fingerprint, RuKind.Read, false);
        Assert.True(first.MayWait);
        _time.Advance(TimeSpan.FromMilliseconds(50));
        session.Tenant.Home.Bucket.Charge(100); // an in-flight statement charged more meanwhile: 140 ms of debt now

        var second = session.RetryBudget();
        Assert.False(second.IsAdmitted);
        Assert.True(second.MayWait, "refused before its allowance was up");

        _time.Advance(TimeSpan.FromMilliseconds(50));
        var third = session.RetryBudget();
        Assert.False(third.IsAdmitted);
        Assert.False(third.MayWait);
        Assert.Equal(TimeSpan.FromMilliseconds(100), third.Rejection.Waited);
        Assert.Equal(1, session.Tenant.Home.BudgetRefused);
    }

    [Fact]
    public void Admit_InsideATransaction_IsChargedButNotRefusedForBudget()
    {
        var gate = Gate(Config());
        var session = Session(gate);
        session.Tenant.Home.Bucket.Charge(1500);

        var admission = session.Admit(new QueryHints(), Fingerprint, RuKind.Write, inTransaction: true);

        Assert.True(admission.IsAdmitted);
        Assert.Equal(-506, session.Tenant.Home.Bucket.Balance, Tolerance);
    }

    [Fact]
    public void Admit_LowerPriorityAndShorterTimeoutHints_Apply()
    {
        var gate = Gate(Config());
        var session = Session(gate);

        var admission = session.Admit(new QueryHints { Priority = Priority.Low, Timeout = TimeSpan.FromSeconds(2) }, Fingerprint, RuKind.Read, false);

        Assert.Equal(Priority.Low, admission.Priority);
        Assert.Equal(TimeSpan.FromSeconds(2), admission.StatementTimeout);
        Assert.Equal(2, gate.HintCounters.Applied);
    }

    [Fact]
    public void Admit_HintSelectsAnAllowedGroup_ChargesThatGroupsBucketAndUsesItsFlow()
    {
        var gate = Gate(Config());
        using var scheduler = gate.CreateScheduler("orders", 4);
        var session = Session(gate);

        var admission = session.Admit(new QueryHints { ResourceGroup = "batch" }, Fingerprint, RuKind.Read, false);
        Completed(session.AcquireSlotAsync(scheduler, TimeSpan.FromSeconds(1), CancellationToken.None));

        Assert.Equal("batch", admission.Group!.Name);
        Assert.Equal(Priority.Low, admission.Priority);
        var batch = session.Tenant.Profile.Accounts[1];
        Assert.Equal(49, batch.Bucket.Balance, Tolerance);
        Assert.Equal(1000, session.Tenant.Home.Bucket.Balance, Tolerance);
        Assert.Equal(1, scheduler.GetFlowStats(batch.FlowFor(scheduler)).InFlight);
    }

    [Fact]
    public void Admit_HintNamesAGroupTheTenantMayNotUse_IsIgnoredAndCounted()
    {
        var gate = Gate(Config());
        var session = Session(gate);

        var admission = session.Admit(new QueryHints { ResourceGroup = "default", Priority = Priority.High }, Fingerprint, RuKind.Read, false);

        Assert.Equal("oltp", admission.Group!.Name);
        Assert.Equal(1, gate.HintCounters.GroupNotAllowedIgnored);
    }

    [Fact]
    public async Task AcquireSlotAsync_PoolFullAndTimeout_Refuses53300AndEndsTheStatement()
    {
        var gate = Gate(Config());
        using var scheduler = gate.CreateScheduler("orders", 1);
        var holder = Session(gate);
        holder.Admit(new QueryHints(), 1, RuKind.Read, false);
        Completed(holder.AcquireSlotAsync(scheduler, TimeSpan.FromSeconds(1), CancellationToken.None));
        var session = Session(gate);
        session.Admit(new QueryHints(), 2, RuKind.Read, false);

        var pending = session.AcquireSlotAsync(scheduler, TimeSpan.FromMilliseconds(250), CancellationToken.None);
        _time.Advance(TimeSpan.FromMilliseconds(250));
        var result = await pending;

        Assert.False(result.IsGranted);
        Assert.Equal("53300", result.Rejection.SqlState);
        var message = result.Rejection.FormatMessage();
        Assert.StartsWith("mproxy: no server slot for tenant 'shop' at priority HIGH within the 250 ms queue timeout (pool 'orders', 1 slots)", message, StringComparison.Ordinal);
        Assert.EndsWith("retry after 1 s", message, StringComparison.Ordinal);
        Assert.Equal(1, session.Tenant.Home.QueueTimeouts);
        Assert.Throws<InvalidOperationException>(() => session.Start(RuWeights.Default));
    }

    [Fact]
    public async Task AcquireSlotAsync_Shed_Refuses53400NamingTenantPriorityAndRetry()
    {
        var gate = Gate(Config());
        using var scheduler = gate.CreateScheduler("orders", 1);
        var holder = Session(gate);
        holder.Admit(new QueryHints(), 1, RuKind.Read, false);
        Completed(holder.AcquireSlotAsync(scheduler, TimeSpan.FromSeconds(1), CancellationToken.None));
        var waiting = new List<(QosSession Session, ValueTask<QosSlotResult> Task)>();
        for (var i = 0; i < 3; i++)
        {
            var s = Session(gate, "bob"); // default group: LOW
            s.Admit(new QueryHints(), 2, RuKind.Read, false);
            waiting.Add((s, s.AcquireSlotAsync(scheduler, TimeSpan.FromSeconds(10), CancellationToken.None)));
        }

        _time.Advance(TimeSpan.FromMilliseconds(106));
        var shed = await waiting[0].Task;

        Assert.False(shed.IsGranted);
        Assert.Equal(QosRejectReason.Shed, shed.Rejection.Reason);
        Assert.Equal("53400", shed.Rejection.SqlState);
        var message = shed.Rejection.FormatMessage();
        Assert.StartsWith("mproxy: shed under load for tenant 'bob' at priority LOW (pool 'orders'", message, StringComparison.Ordinal);
        Assert.Contains("5 ms target", message, StringComparison.Ordinal);
        Assert.EndsWith("retry after 105 ms", message, StringComparison.Ordinal);
        Assert.Equal(1, waiting[0].Session.Tenant.Home.Shed);
        Assert.False(waiting[1].Task.IsCompleted);
    }

    [Fact]
    public void Tick_RunawayCancelRule_CancelsThroughTheTargetAndQuarantinesTheFingerprint()
    {
        var rule = new RunawayRuleConfig { Name = "slow", MaxElapsed = TimeSpan.FromSeconds(2), Action = RunawayAction.Cancel, Watch = TimeSpan.FromMinutes(1) };
        var gate = Gate(Config(rules: [rule]));
        var target = new RecordingTarget();
        var session = gate.OpenSession(gate.ResolveTenant(new TenantIdentity("shop", "orders", null)), target);
        session.Admit(new QueryHints(), Fingerprint, RuKind.Read, false);
        session.Start(RuWeights.Default);

        _time.Advance(TimeSpan.FromSeconds(2));
        Assert.Equal(0, gate.Tick());
        _time.Advance(TimeSpan.FromSeconds(1));
        Assert.Equal(1, gate.Tick());
        _time.Advance(TimeSpan.FromSeconds(1));
        Assert.Equal(0, gate.Tick()); // asked once

        var (hit, cancel) = Assert.Single(target.Calls);
        Assert.Equal("slow", hit.Rule!.Name);
        Assert.Equal("57014", cancel.SqlState);
        var message = cancel.FormatMessage();
        Assert.StartsWith("mproxy: query cancelled for tenant 'shop' by runaway rule 'slow' (ran 3000 ms, over the 2000 ms limit)", message, StringComparison.Ordinal);
        Assert.EndsWith("retry after 60 s", message, StringComparison.Ordinal);
        var completion = session.Complete();
        Assert.True(completion.Cancelled);
        Assert.Equal(1, session.Tenant.Home.RunawayCancelled);

        var again = session.Admit(new QueryHints(), Fingerprint, RuKind.Read, false);
        Assert.False(again.IsAdmitted);
        Assert.Equal("57014", again.Rejection.SqlState);
        Assert.StartsWith("mproxy: query rejected for tenant 'shop': fingerprint 0x0000000000001234 is quarantined by runaway rule 'slow'; retry after 5", again.Rejection.FormatMessage(), StringComparison.Ordinal);
        Assert.True(session.Admit(new QueryHints(), Fingerprint + 1, RuKind.Read, false).IsAdmitted);
        session.Complete();

        _time.Advance(TimeSpan.FromMinutes(1));
        Assert.True(session.Admit(new QueryHints(), Fingerprint, RuKind.Read, false).IsAdmitted);
    }

    [Fact]
    public void Tick_ShadowRule_ReportsWithoutCancelling()
    {
        var rule = new RunawayRuleConfig { Name = "hog", MaxRuPerExecution = 100, Action = RunawayAction.Cancel, Shadow = true };
        var gate = Gate(Config(rules: [rule]));
        var target = new RecordingTarget();
        var session = gate.OpenSession(gate.ResolveTenant(new TenantIdentity("shop", "orders", null)), target);
        session.Admit(new QueryHints(), Fingerprint, RuKind.Read, false);
        session.Start(RuWeights.Default);

        _time.Advance(TimeSpan.FromSeconds(1)); // 500 RU of latency
        Assert.Equal(0, gate.Tick());

        var (hit, cancel) = Assert.Single(target.Calls);
        Assert.True(hit.Shadow);
        Assert.False(cancel.IsRejected);
        Assert.True(session.IsRunning);
        session.Complete();
        var next = session.Admit(new QueryHints(), Fingerprint, RuKind.Read, false);
        Assert.True(next.IsAdmitted);
        Assert.Equal("hog", next.Reported!.Rule.Name);
    }

    [Fact]
    public void Admit_DeprioritizeVerdict_RunsLaterExecutionsAtLow()
    {
        var rule = new RunawayRuleConfig { Name = "slow", MaxElapsed = TimeSpan.FromSeconds(1), Action = RunawayAction.Deprioritize };
        var gate = Gate(Config(rules: [rule]));
        var session = Session(gate);
        session.Admit(new QueryHints(), Fingerprint, RuKind.Read, false);
        session.Start(RuWeights.Default);
        _time.Advance(TimeSpan.FromSeconds(2));
        session.Complete();

        Assert.Equal(Priority.Low, session.Admit(new QueryHints(), Fingerprint, RuKind.Read, false).Priority);
        Assert.Equal(Priority.High, session.Admit(new QueryHints(), Fingerprint + 1, RuKind.Read, false).Priority);
    }

    [Fact]
    public void Admit_ThrottleVerdict_CapsConcurrentExecutionsAcrossSessions()
    {
        var rule = new RunawayRuleConfig { Name = "hot", MaxRuPerExecution = 5, Action = RunawayAction.Throttle, ThrottleMaxConcurrent = 1 };
        var gate = Gate(Config(rules: [rule]));
        var first = Session(gate);
        first.Admit(new QueryHints(), Fingerprint, RuKind.Read, false);
        first.Start(RuWeights.Default);
        _time.Advance(TimeSpan.FromMilliseconds(20));
        first.Complete(); // 11 RU: over 5, throttled from now on

        Assert.True(first.Admit(new QueryHints(), Fingerprint, RuKind.Read, false).IsAdmitted);
        var second = Session(gate).Admit(new QueryHints(), Fingerprint, RuKind.Read, false);
        Assert.False(second.IsAdmitted);
        Assert.Equal("53400", second.Rejection.SqlState);
        Assert.Contains("at most 1 concurrent executions", second.Rejection.FormatMessage(), StringComparison.Ordinal);

        first.Complete();
        Assert.True(Session(gate).Admit(new QueryHints(), Fingerprint, RuKind.Read, false).IsAdmitted);
    }

    [Fact]
    public void Admit_QosDisabled_AdmitsEverythingAndChargesNothing()
    {
        var gate = Gate(Config() with { Enabled = false });
        using var scheduler = gate.CreateScheduler("orders", 1);
        var session = Session(gate);
        session.Tenant.Home.Bucket.Charge(5000);

        var admission = session.Admit(new QueryHints(), Fingerprint, RuKind.Write, false);
        var slot = Completed(session.AcquireSlotAsync(scheduler, TimeSpan.FromSeconds(1), CancellationToken.None));
        session.Start(RuWeights.Default);
        _time.Advance(TimeSpan.FromSeconds(1));
        var done = session.Complete();

        Assert.True(admission.IsAdmitted);
        Assert.True(slot.IsGranted);
        Assert.Equal(0, scheduler.GetStats().Busy);
        Assert.Equal(0, done.Ru);
    }

    [Fact]
    public void Reconfigure_NewGroupBudget_AppliesToExistingTenantsAndFlows()
    {
        var gate = Gate(Config());
        using var scheduler = gate.CreateScheduler("orders", 2);
        var session = Session(gate);
        var flow = session.Tenant.Home.FlowFor(scheduler);

        gate.Reconfigure(Config(oltp: new ResourceGroupConfig { Name = "oltp", RuPerSecond = 10, Burst = 20, DebtMax = 5, Weight = 3, MaxConcurrent = 1, Priority = Priority.Medium }));

        Assert.Equal(new RuBucketSettings(10, 20, 5), session.Tenant.Home.Bucket.Settings);
        Assert.Equal(20, session.Tenant.Home.Bucket.Balance, Tolerance);
        Assert.Equal(3, flow.Weight);
        Assert.Equal(1, flow.MaxConcurrent);
        Assert.Equal(Priority.Medium, session.Admit(new QueryHints(), Fingerprint, RuKind.Read, false).Priority);
        Assert.Equal(["oltp"], session.Tenant.Profile.Groups.Select(g => g.Name));
    }

    [Fact]
    public void Dispose_RunningStatementAndHeldSlot_CompletesReleasesAndLeavesTheGate()
    {
        var gate = Gate(Config());
        using var scheduler = gate.CreateScheduler("orders", 1);
        var session = Session(gate);
        session.Admit(new QueryHints(), Fingerprint, RuKind.Read, false);
        Completed(session.AcquireSlotAsync(scheduler, TimeSpan.FromSeconds(1), CancellationToken.None));
        session.Start(RuWeights.Default);
        Assert.Equal(1, gate.SessionCount);

        session.Dispose();

        Assert.Equal(0, scheduler.GetStats().Busy);
        Assert.Equal(0, gate.SessionCount);
        Assert.Single(gate.Fingerprints.Snapshot().Top);
    }

    [Fact]
    public void Transaction_SlotHeldAcrossStatements_ReleasedOnceWithTheirSum()
    {
        var gate = Gate(Config());
        using var scheduler = gate.CreateScheduler("orders", 1);
        var session = Session(gate);
        double total = 0;
        for (var i = 0; i < 3; i++)
        {
            session.Admit(new QueryHints(), Fingerprint, RuKind.Write, inTransaction: i > 0);
            Assert.True(Completed(session.AcquireSlotAsync(scheduler, TimeSpan.FromSeconds(1), CancellationToken.None)).IsGranted);
            session.Start(RuWeights.Default);
            _time.Advance(TimeSpan.FromMilliseconds(2));
            total += session.Complete().Ru;
            Assert.Equal(1, scheduler.GetStats().Busy);
        }

        session.ReleaseSlot();

        Assert.Equal(0, scheduler.GetStats().Busy);
        Assert.Equal(total, scheduler.GetFlowStats(session.Tenant.Home.FlowFor(scheduler)).RuServed, Tolerance);
        Assert.Equal(3 * 7, total, Tolerance);
    }

    [Fact]
    public void Statement_SteadyState_DoesNotAllocate()
    {
        var rule = new RunawayRuleConfig { Name = "slow", MaxElapsed = TimeSpan.FromHours(1), Action = RunawayAction.Cancel };
        var gate = Gate(Config(rules: [rule]));
        using var scheduler = gate.CreateScheduler("orders", 4);
        var session = Session(gate);
        var hints = new QueryHints { Priority = Priority.Medium, Timeout = TimeSpan.FromSeconds(1), ResourceGroup = "batch" };
        // The clock stands still: lease enough RU for every statement (the policy tier's seam).
        session.Tenant.Profile.Accounts[0].Bucket.Grant(1e9, TimeSpan.FromDays(1));
        session.Tenant.Profile.Accounts[1].Bucket.Grant(1e9, TimeSpan.FromDays(1));
        void RunOne()
        {
            var admission = session.Admit(hints, Fingerprint, RuKind.Read, false);
            Assert.True(admission.IsAdmitted);
            Completed(session.AcquireSlotAsync(scheduler, TimeSpan.FromSeconds(1), CancellationToken.None));
            session.Start(RuWeights.Default);
            session.AddBytes(100, 10);
            session.Tick();
            session.Complete();
            session.ReleaseSlot();
            Completed(session.AdmitAsync(new QueryHints(), Fingerprint, RuKind.Write, false, CancellationToken.None));
            session.Complete();
        }
        for (var i = 0; i < 50; i++)
            RunOne();

        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 500; i++)
            RunOne();

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    [Fact]
    public void BeginSlotWait_SynchronousCore_QueuesThenGrantsOnRelease()
    {
        var gate = Gate(Config());
        using var scheduler = gate.CreateScheduler("orders", 1);
        var first = Session(gate);
        var second = Session(gate, "bob");
        first.Admit(new QueryHints(), 1, RuKind.Read, false);
        second.Admit(new QueryHints(), 2, RuKind.Read, false);

        Assert.Null(first.BeginSlotWait(scheduler, out var immediate));
        Assert.True(immediate.IsGranted);
        Assert.True(first.HoldsSlot);
        var waiter = second.BeginSlotWait(scheduler, out _);
        Assert.NotNull(waiter);
        Assert.Equal(WaitOutcome.Pending, waiter.Outcome);

        _time.Advance(TimeSpan.FromMilliseconds(4));
        first.Complete();
        first.ReleaseSlot();

        Assert.Equal(WaitOutcome.Granted, waiter.Outcome);
        var result = second.EndSlotWait(waiter);
        Assert.True(result.IsGranted);
        Assert.Equal(TimeSpan.FromMilliseconds(4), result.Waited);
        Assert.True(second.HoldsSlot);
    }

    [Fact]
    public void EndSlotWait_TimedOutByTheDriver_RefusesAndEndsTheStatement()
    {
        var gate = Gate(Config());
        using var scheduler = gate.CreateScheduler("orders", 1);
        var first = Session(gate);
        var second = Session(gate);
        first.Admit(new QueryHints(), 1, RuKind.Read, false);
        first.BeginSlotWait(scheduler, out _);
        second.Admit(new QueryHints(), 2, RuKind.Read, false);
        var waiter = second.BeginSlotWait(scheduler, out _)!;

        scheduler.Cancel(waiter, WaitOutcome.TimedOut);
        var result = second.EndSlotWait(waiter);

        Assert.Equal(QosRejectReason.QueueTimeout, result.Rejection.Reason);
        Assert.False(second.HoldsSlot);
        Assert.Throws<InvalidOperationException>(() => second.Start(RuWeights.Default));
    }

    private sealed class RecordingTarget : IRunawayTarget
    {
        public List<(RunawayHit Hit, QosRejection Cancel)> Calls { get; } = [];

        public void OnRunaway(QosSession session, RunawayHit hit, QosRejection cancel) => Calls.Add((hit, cancel));
    }
}
