using MProxy.Abstractions;
using MProxy.Abstractions.Policy;
using MProxy.Abstractions.ResourceUnits;
using MProxy.Edge.Policy;
using MProxy.Edge.Qos;
using MProxy.Edge.Routing;
using MProxy.TestSupport;
using PolicyAction = MProxy.Abstractions.Policy.RunawayAction;
using PolicyVerdict = MProxy.Abstractions.Policy.RunawayVerdict;

namespace MProxy.Edge.Tests.Qos;

public sealed class QosPolicySeamsTests : IDisposable
{
    private const double Tolerance = 1e-6;
    private readonly ManualTimeProvider _time = new();
    private readonly FakePolicy _policy;
    private readonly QosGate _gate;

    public QosPolicySeamsTests()
    {
        _policy = new FakePolicy(_time);
        var config = new QosConfig
        {
            Enabled = true,
            Groups = [new ResourceGroupConfig { Name = "default", RuPerSecond = 100, Burst = 100, DebtMax = 50 }],
        };
        _gate = new QosGate(config, _time, new QosPolicySeams(_policy, _policy, _policy));
    }

    public void Dispose() => _gate.Dispose();

    [Fact]
    public void Tick_LeasedAllowance_SetsTheHomeBucketOncePerVersion()
    {
        var tenant = _gate.ResolveTenant(new TenantIdentity("shop", "orders", null));
        _policy.Allowance = new TenantAllowance(10, 20, AllowanceSource.Lease, 2, _time.GetUtcNow().AddSeconds(10));

        _gate.Tick();
        Assert.Equal(new RuBucketSettings(10, 20, 50), tenant.Home.Bucket.Settings);
        Assert.Equal(20, tenant.Home.Bucket.Balance, Tolerance);

        tenant.Home.Bucket.Reconfigure(new RuBucketSettings(1, 1, 1)); // anything else would be kept until the version changes
        _gate.Tick();
        Assert.Equal(new RuBucketSettings(1, 1, 1), tenant.Home.Bucket.Settings);

        _policy.Allowance = new TenantAllowance(double.PositiveInfinity, double.PositiveInfinity, AllowanceSource.Unlimited, 4, DateTimeOffset.MaxValue);
        _gate.Tick();
        Assert.Equal(new RuBucketSettings(100, 100, 50), tenant.Home.Bucket.Settings);
    }

    [Fact]
    public void Tick_TenantInDebt_ReportsTheDebtGauge()
    {
        var tenant = _gate.ResolveTenant(new TenantIdentity("shop", "orders", null));
        tenant.Home.Bucket.Charge(130);

        _gate.Tick();

        Assert.Equal(30, _policy.Debt["shop"], Tolerance);
    }

    [Fact]
    public async Task AdmitAsync_WaitingForBudget_IsAdmittedSoonAfterTheRateRises()
    {
        // A slow lease (1 RU/s) puts a statement 5 s from admission; then the lease expires and the
        // local share (100 RU/s) pays the debt off in 50 ms. The waiting statement must see that,
        // not sleep out the 5 s it was first told — nor the rest of its 200-ms slice: the new
        // settings wake it, and it sleeps for the debt at the new rate.
        var config = new QosConfig
        {
            Enabled = true,
            Groups = [new ResourceGroupConfig { Name = "default", RuPerSecond = 100, Burst = 10, DebtMax = 50, MaxBudgetWait = TimeSpan.FromSeconds(10) }],
        };
        using var gate = new QosGate(config, _time, new QosPolicySeams(_policy, _policy, _policy));
        var session = gate.OpenSession(gate.ResolveTenant(new TenantIdentity("shop", "orders", null)));
        _policy.Allowance = new TenantAllowance(1, 10, AllowanceSource.Lease, 2, _time.GetUtcNow().AddSeconds(3));
        gate.Tick();
        session.Tenant.Home.Bucket.Charge(15); // 5 RU of debt at 1 RU/s

        var pending = session.AdmitAsync(new QueryHints(), 7, RuKind.Read, false, CancellationToken.None);
        Assert.False(pending.IsCompleted);
        Assert.Equal(1, _policy.BudgetWaits); // the edge tells the tier its budget is holding the tenant back
        Assert.Equal(_time.GetUtcNow() + QosSession.BudgetRecheck, _time.NextDue);
        _policy.Allowance = new TenantAllowance(100, 10, AllowanceSource.LocalShare, 3, DateTimeOffset.MaxValue);
        gate.Tick();
        var repaid = _time.GetUtcNow() + TimeSpan.FromMilliseconds(50);
        await Poll.UntilAsync(() => _time.NextDue == repaid, "the woken statement sleeps for the debt at the new rate");
        _time.Advance(TimeSpan.FromMilliseconds(50));

        var admission = await pending.AsTask().WaitAsync(Poll.DefaultTimeout);
        Assert.True(admission.IsAdmitted);
        Assert.Equal(1, session.Tenant.Home.Admitted);
    }

    [Fact]
    public void Admit_GlobalRejectVerdict_RefusesWith57014AndIsImportedOnce()
    {
        var session = _gate.OpenSession(_gate.ResolveTenant(new TenantIdentity("shop", "orders", null)));
        _policy.Verdict = new PolicyVerdict
        {
            Tenant = new TenantId("shop"),
            Fingerprint = new FingerprintId(42),
            Action = PolicyAction.Reject,
            ExpiresAt = _time.GetUtcNow().AddSeconds(30),
        };

        var first = session.Admit(new QueryHints(), 42, RuKind.Read, false);
        var second = session.Admit(new QueryHints(), 42, RuKind.Read, false);

        Assert.False(first.IsAdmitted);
        Assert.Equal("57014", first.Rejection.SqlState);
        Assert.Contains("runaway rule 'policy'", first.Rejection.FormatMessage(), StringComparison.Ordinal);
        Assert.EndsWith("retry after 30 s", first.Rejection.FormatMessage(), StringComparison.Ordinal);
        Assert.False(second.IsAdmitted);
        Assert.Equal(1, _policy.VerdictLookups);
        Assert.True(session.Admit(new QueryHints(), 43, RuKind.Read, false).IsAdmitted);

        _time.Advance(TimeSpan.FromSeconds(30));
        Assert.True(session.Admit(new QueryHints(), 42, RuKind.Read, false).IsAdmitted);
    }

    [Fact]
    public void Admit_GlobalDeprioritizeVerdict_RunsAtLow()
    {
        var session = _gate.OpenSession(_gate.ResolveTenant(new TenantIdentity("shop", "orders", null)));
        _policy.Verdict = new PolicyVerdict
        {
            Tenant = new TenantId("shop"),
            Fingerprint = new FingerprintId(42),
            Action = PolicyAction.Deprioritize,
            ExpiresAt = _time.GetUtcNow().AddSeconds(30),
        };

        Assert.Equal(Priority.Low, session.Admit(new QueryHints(), 42, RuKind.Read, false).Priority);
    }

    [Fact]
    public void Statement_WithAUsageSink_ReportsChargesRefusalsAndTheExecution()
    {
        var session = _gate.OpenSession(_gate.ResolveTenant(new TenantIdentity("shop", "orders", null)));

        session.Admit(new QueryHints(), 7, RuKind.Write, false);
        session.Start(RuWeights.Default);
        _time.Advance(TimeSpan.FromMilliseconds(300));
        session.Tick();
        var done = session.Complete();
        var refused = session.Admit(new QueryHints(), 7, RuKind.Read, false); // 156 RU charged against 100 (+30 refilled): at the debt bound

        Assert.Equal(done.Ru, _policy.Admitted, Tolerance);
        Assert.False(refused.IsAdmitted);
        Assert.Equal(1, _policy.Refused);
        var execution = Assert.Single(_policy.Executions);
        Assert.Equal(("shop", 7UL), (execution.Tenant, execution.Fingerprint));
        Assert.Equal(done.Ru, execution.Ru, Tolerance);
        Assert.Equal(300, execution.LatencyMs, Tolerance);
        Assert.Equal(156, done.Ru, Tolerance);
    }

    private sealed class FakePolicy(TimeProvider time) : ITenantAllowance, IRunawayVerdicts, IPolicyUsageSink
    {
        public TenantAllowance? Allowance { get; set; }

        public PolicyVerdict? Verdict { get; set; }

        public int VerdictLookups { get; private set; }

        public double Admitted { get; private set; }

        public int Refused { get; private set; }

        public Dictionary<string, double> Debt { get; } = [];

        public List<(string Tenant, ulong Fingerprint, double Ru, double LatencyMs)> Executions { get; } = [];

        public bool TryGetAllowance(string tenant, out TenantAllowance allowance)
        {
            allowance = Allowance ?? default;
            return Allowance is not null;
        }

        public bool TryGetVerdict(string tenant, ulong fingerprint, out PolicyVerdict verdict)
        {
            VerdictLookups++;
            verdict = Verdict!;
            return Verdict is { } v && v.Tenant.Value == tenant && v.Fingerprint.Value == fingerprint && time.GetUtcNow() < v.ExpiresAt;
        }

        public void RecordAdmitted(string tenant, double ru) => Admitted += ru;

        public void RecordRefused(string tenant, double estimatedRu, bool shed) => Refused++;

        public int BudgetWaits { get; private set; }

        public void RecordBudgetWait(string tenant) => BudgetWaits++;

        public void ReportDebt(string tenant, double debtRu) => Debt[tenant] = debtRu;

        public void RecordExecution(string tenant, ulong fingerprint, double ru, double latencyMs, string? sample = null) =>
            Executions.Add((tenant, fingerprint, ru, latencyMs));

        public void ReportBackend(string backend, int wanted, int open)
        {
        }
    }
}
