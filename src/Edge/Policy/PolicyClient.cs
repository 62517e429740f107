using System.Collections.Frozen;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using MProxy.Abstractions.Policy;

namespace MProxy.Edge.Policy;

/// <summary>
/// The edge's side of the policy tier: once per tick, one batched exchange with an
/// <see cref="IPolicyTier"/> (the in-process grains in the embedded mode, or a silo over HTTP/2),
/// carrying the usage recorded through <see cref="IPolicyUsageSink"/> and bringing back leases,
/// verdicts and backend slots that the query path reads without any I/O.
/// </summary>
/// <remarks>
/// Degradation: when an exchange fails, the client retries with exponential backoff and seeded
/// jitter, and every tenant keeps spending its current lease until it expires; after that the tenant
/// runs on a local-only share, <c>budget ÷ live edges</c> of the last membership view (never below
/// <see cref="PolicyClientOptions.LocalShareFloorRuPerSecond"/>). Nothing ever fails closed. The
/// first successful exchange restores leases: no restart needed. Lease expiry is checked when an
/// allowance is read, so it is exact between ticks.
/// </remarks>
public sealed partial class PolicyClient : BackgroundService, ITenantAllowance, ICapacityAllowance, IRunawayVerdicts, IPolicyUsageSink
{
    private static readonly TimeSpan MinInterval = TimeSpan.FromMilliseconds(100);
    private static readonly TimeSpan MaxInterval = TimeSpan.FromSeconds(10);

    private readonly IPolicyTier _tier;
    private readonly PolicyClientOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger _log;
    private readonly Random _jitter;
    private readonly PolicyUsageRecorder _recorder = new();
    private readonly EdgeId _edge;

    // Owned by the exchange loop (one exchange at a time).
    private readonly Dictionary<string, TenantSlot> _tenants = new(StringComparer.Ordinal);
    private readonly Dictionary<(string, ulong), FingerprintCostReport> _unsentFingerprints = [];
    private readonly Dictionary<string, BackendSlot> _backendSlots = new(StringComparer.Ordinal);
    private long _sequence;
    private long _allowanceVersion;
    private DateTimeOffset _lastDrain;
    private int _failures;
    private DateTimeOffset? _lastSuccess;
    private string? _lastError;
    private int _liveEdges = 1;
    private long _configVersion;
    private PolicyClientState _reportedState = PolicyClientState.Starting;

    // Published to the query path: replaced whole, read without locks.
    private volatile FrozenDictionary<string, AllowanceEntry> _allowances = FrozenDictionary<string, AllowanceEntry>.Empty;
    private volatile FrozenDictionary<(string, ulong), LocalVerdict> _verdicts = FrozenDictionary<(string, ulong), LocalVerdict>.Empty;
    private volatile FrozenDictionary<string, SlotEntry> _slots = FrozenDictionary<string, SlotEntry>.Empty;

    public PolicyClient(IPolicyTier tier, PolicyClientOptions options, TimeProvider time, ILogger<PolicyClient> log)
    {
        _tier = tier;
        _options = options;
        _time = time;
        _log = log;
        _edge = new EdgeId(options.EdgeId);
        _jitter = new Random(options.JitterSeed ?? StableSeed(options.EdgeId));
        _lastDrain = time.GetUtcNow();
    }

    /// <summary>Raised by the exchange loop when <see cref="PolicyClientStatus.State"/> changes.</summary>
    public event Action<PolicyClientStatus>? StatusChanged;

    /// <summary>Raised by the exchange loop after new leases arrived (a push alternative to polling <see cref="TryGetAllowance"/>).</summary>
    public event Action? AllowancesChanged;

    public PolicyClientStatus Status
    {
        get
        {
            var now = _time.GetUtcNow();
            var degraded = 0;
            foreach (var entry in _allowances.Values)
                if (!entry.Unlimited && now >= entry.ValidUntil)
                    degraded++;
            return new PolicyClientStatus
            {
                State = StateOf(degraded),
                ConsecutiveFailures = Volatile.Read(ref _failures),
                LastSuccess = _lastSuccess,
                LastError = _lastError,
                LiveEdges = Volatile.Read(ref _liveEdges),
                ConfigVersion = Interlocked.Read(ref _configVersion),
                DegradedTenants = degraded,
            };
        }
    }

    public bool IsDegraded => Status.IsDegraded;

    public bool TryGetAllowance(string tenant, out TenantAllowance allowance)
    {
        if (!_allowances.TryGetValue(tenant, out var entry))
        {
            allowance = default;
            return false;
        }
        if (entry.Unlimited)
        {
            allowance = new TenantAllowance(double.PositiveInfinity, double.PositiveInfinity, AllowanceSource.Unlimited, entry.Version * 2, entry.ValidUntil);
            return true;
        }
        var now = _time.GetUtcNow();
        if (now < entry.ValidUntil)
        {
            allowance = new TenantAllowance(entry.RuPerSecond, entry.BurstRu, AllowanceSource.Lease, entry.Version * 2, entry.ValidUntil);
            return true;
        }
        var edges = Math.Max(1, entry.LiveEdges);
        var share = Math.Max(_options.LocalShareFloorRuPerSecond, entry.BudgetRuPerSecond / edges);
        var burst = Math.Max(share, entry.BudgetBurstRu / edges);
        allowance = new TenantAllowance(share, burst, AllowanceSource.LocalShare, (entry.Version * 2) + 1, DateTimeOffset.MaxValue);
        return true;
    }

    public bool TryGetSlots(string backend, out int slots)
    {
        slots = 0;
        if (!_slots.TryGetValue(backend, out var entry) || entry.Unlimited)
            return false;
        if (_time.GetUtcNow() < entry.ValidUntil)
            slots = entry.Slots;
        else
            slots = Math.Max(1, entry.LimitSlots / Math.Max(1, entry.LiveEdges));
        return true;
    }

    public bool TryGetVerdict(string tenant, ulong fingerprint, out RunawayVerdict verdict)
    {
        if (_verdicts.TryGetValue((tenant, fingerprint), out var local) && _time.GetUtcNow() < local.ExpiresAt)
        {
            verdict = local.Verdict;
            return true;
        }
        verdict = null!;
        return false;
    }

    public void RecordAdmitted(string tenant, double ru) => _recorder.Admitted(tenant, ru);

    public void RecordRefused(string tenant, double estimatedRu, bool shed) => _recorder.Refused(tenant, estimatedRu, shed);

    public void RecordBudgetWait(string tenant) => _recorder.BudgetWait(tenant);

    public void ReportDebt(string tenant, double debtRu) => _recorder.Debt(tenant, debtRu);

    public void RecordExecution(string tenant, ulong fingerprint, double ru, double latencyMs, string? sample = null) =>
        _recorder.Execution(tenant, fingerprint, ru, latencyMs, sample);

    public void ReportBackend(string backend, int wanted, int open) => _recorder.Backend(backend, wanted, open);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        ClientStarted(_log, _edge.Value, _tier.GetType().Name);
        try
        {
            while (!stoppingToken.IsCancellationRequested)
            {
                var delay = await ExchangeOnceAsync(stoppingToken).ConfigureAwait(false);
                await Task.Delay(delay, _time, stoppingToken).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    /// <summary>One exchange: report, apply the answer (or count the failure); returns how long to wait before the next.</summary>
    public async Task<TimeSpan> ExchangeOnceAsync(CancellationToken cancellationToken)
    {
        var sentAt = _time.GetUtcNow();
        var request = BuildRequest(sentAt);
        PolicyExchangeResponse response;
        try
        {
            using var timeout = new CancellationTokenSource(_options.CallTimeout, _time);
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
            response = await _tier.ExchangeAsync(request, linked.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (!cancellationToken.IsCancellationRequested)
        {
            var failures = Interlocked.Increment(ref _failures);
            _lastError = e is OperationCanceledException ? $"no answer within {_options.CallTimeout.TotalMilliseconds:0} ms" : e.Message;
            var delay = Backoff(failures);
            ExchangeFailed(_log, _edge.Value, failures, delay.TotalMilliseconds, _lastError);
            PublishStatus();
            return delay;
        }
        Apply(request, response, sentAt);
        return response.NextExchangeIn < MinInterval ? MinInterval : response.NextExchangeIn > MaxInterval ? MaxInterval : response.NextExchangeIn;
    }

    /// <summary>The delay before retry number <paramref name="failures"/>: exponential, capped, with "equal jitter" (half fixed, half random).</summary>
    internal TimeSpan Backoff(int failures)
    {
        var exponent = Math.Min(failures - 1, 30);
        var ceiling = Math.Min(_options.BackoffMax.Ticks, _options.BackoffBase.Ticks * (1L << Math.Min(exponent, 20)));
        return TimeSpan.FromTicks((ceiling / 2) + (long)(_jitter.NextDouble() * (ceiling / 2)));
    }

    private PolicyExchangeRequest BuildRequest(DateTimeOffset now)
    {
        var elapsed = Math.Max((now - _lastDrain).TotalSeconds, 1e-3);
        _lastDrain = now;
        foreach (var (tenant, counters) in _recorder.DrainTenants())
        {
            if (!_tenants.TryGetValue(tenant, out var slot))
                _tenants[tenant] = slot = new TenantSlot { LastActivity = now };
            var rate = counters.RequestedRu / elapsed;
            slot.Demand = slot.HasDemand ? (0.5 * slot.Demand) + (0.5 * rate) : rate;
            slot.HasDemand = true;
            slot.DebtRu = counters.DebtRu;
            slot.Constrained = counters.Constrained || counters.DebtRu > 0;
            slot.UnsentUsedRu += counters.UsedRu;
            slot.UnsentAdmitted += counters.Admitted;
            slot.UnsentThrottled += counters.Throttled;
            slot.UnsentShed += counters.Shed;
            if (counters.RequestedRu > 0 || counters.Admitted + counters.Throttled + counters.Shed > 0 || counters.DebtRu > 0)
                slot.LastActivity = now;
        }
        List<string>? idle = null;
        foreach (var (tenant, slot) in _tenants)
            if (now - slot.LastActivity >= _options.TenantIdleTimeout && slot.UnsentUsedRu == 0)
                (idle ??= []).Add(tenant);
        if (idle is not null)
        {
            foreach (var tenant in idle)
            {
                _tenants.Remove(tenant);
                _recorder.ForgetTenant(tenant);
            }
            PublishAllowances();
        }

        foreach (var (tenant, fingerprint, c) in _recorder.DrainFingerprints())
        {
            var report = new FingerprintCostReport
            {
                Tenant = new TenantId(tenant),
                Fingerprint = new FingerprintId(fingerprint),
                Count = c.Count,
                TotalRu = c.Ru,
                TotalLatencyMs = c.LatencyMs,
                MaxRu = c.MaxRu,
                MaxLatencyMs = c.MaxLatencyMs,
                Sample = c.Sample,
            };
            _unsentFingerprints[(tenant, fingerprint)] = _unsentFingerprints.TryGetValue((tenant, fingerprint), out var earlier)
                ? earlier with
                {
                    Count = earlier.Count + report.Count,
                    TotalRu = earlier.TotalRu + report.TotalRu,
                    TotalLatencyMs = earlier.TotalLatencyMs + report.TotalLatencyMs,
                    MaxRu = Math.Max(earlier.MaxRu, report.MaxRu),
                    MaxLatencyMs = Math.Max(earlier.MaxLatencyMs, report.MaxLatencyMs),
                    Sample = earlier.Sample ?? report.Sample,
                }
                : report;
        }

        if (_unsentFingerprints.Count > _options.MaxFingerprintsPerExchange)
        {
            var cheapest = _unsentFingerprints.Values
                .OrderBy(f => f.Count > 0 ? f.TotalRu / f.Count : 0)
                .ThenBy(f => f.Tenant)
                .ThenBy(f => f.Fingerprint)
                .Take(_unsentFingerprints.Count - _options.MaxFingerprintsPerExchange)
                .ToList();
            foreach (var f in cheapest)
                _unsentFingerprints.Remove((f.Tenant.Value, f.Fingerprint.Value));
            FingerprintsDropped(_log, _edge.Value, cheapest.Count);
        }

        var tenants = new List<TenantUsageReport>(_tenants.Count);
        foreach (var (tenant, slot) in _tenants.OrderBy(t => t.Key, StringComparer.Ordinal))
            tenants.Add(new TenantUsageReport
            {
                Tenant = new TenantId(tenant),
                UsedRu = slot.UnsentUsedRu,
                DemandRuPerSecond = slot.Demand,
                DebtRu = slot.DebtRu,
                Constrained = slot.Constrained,
                Admitted = slot.UnsentAdmitted,
                Throttled = slot.UnsentThrottled,
                Shed = slot.UnsentShed,
                AppliedLeaseSequence = slot.AppliedSequence,
            });

        var backends = new List<BackendSlotDemand>();
        foreach (var (backend, wanted, open) in _recorder.Backends())
        {
            _backendSlots.TryGetValue(backend, out var held);
            // The tier may release older slot leases only once the pool is within the newest one.
            if (held is not null && open <= held.Slots)
                held.AppliedSequence = held.Sequence;
            backends.Add(new BackendSlotDemand { Backend = new BackendId(backend), Wanted = wanted, Open = open, AppliedLeaseSequence = held?.AppliedSequence ?? 0 });
        }

        return new PolicyExchangeRequest
        {
            Edge = _edge,
            Sequence = ++_sequence,
            ConfigVersion = Interlocked.Read(ref _configVersion),
            Degraded = Status.IsDegraded,
            Tenants = tenants,
            Fingerprints = [.. _unsentFingerprints.Values],
            Backends = backends,
        };
    }

    private void Apply(PolicyExchangeRequest request, PolicyExchangeResponse response, DateTimeOffset sentAt)
    {
        // Lease times are the tier's clock: re-base them on ours, counting from when we asked (never later than the tier meant).
        DateTimeOffset Local(DateTimeOffset tierTime) => sentAt + (tierTime - response.ServerTime);

        foreach (var report in request.Tenants)
            if (_tenants.TryGetValue(report.Tenant.Value, out var slot))
            {
                slot.UnsentUsedRu -= report.UsedRu;
                slot.UnsentAdmitted -= report.Admitted;
                slot.UnsentThrottled -= report.Throttled;
                slot.UnsentShed -= report.Shed;
            }
        foreach (var report in request.Fingerprints)
            _unsentFingerprints.Remove((report.Tenant.Value, report.Fingerprint.Value));

        var liveEdges = Math.Max(1, response.LiveEdges);
        foreach (var lease in response.Leases)
        {
            if (!_tenants.TryGetValue(lease.Tenant.Value, out var slot))
                _tenants[lease.Tenant.Value] = slot = new TenantSlot { LastActivity = sentAt };
            if (lease.Sequence < slot.AppliedSequence)
                continue;
            slot.AppliedSequence = lease.Sequence;
            slot.Lease = new AllowanceEntry
            {
                RuPerSecond = lease.RuPerSecond,
                BurstRu = lease.BurstRu,
                ValidUntil = Local(lease.ValidUntil),
                Unlimited = lease.Unlimited,
                BudgetRuPerSecond = lease.BudgetRuPerSecond,
                BudgetBurstRu = lease.BudgetBurstRu,
                LiveEdges = Math.Max(liveEdges, lease.LiveEdges),
            };
        }
        foreach (var lease in response.Backends)
        {
            if (!_backendSlots.TryGetValue(lease.Backend.Value, out var held))
                _backendSlots[lease.Backend.Value] = held = new BackendSlot();
            if (lease.Sequence < held.Sequence)
                continue;
            held.Sequence = lease.Sequence;
            held.Slots = lease.Slots;
            held.Entry = new SlotEntry(lease.Slots, Local(lease.ValidUntil), lease.Unlimited, lease.LimitSlots, Math.Max(liveEdges, lease.LiveEdges));
        }
        var verdicts = new Dictionary<(string, ulong), LocalVerdict>();
        foreach (var verdict in response.Verdicts)
            verdicts[(verdict.Tenant.Value, verdict.Fingerprint.Value)] = new LocalVerdict(verdict, Local(verdict.ExpiresAt));
        foreach (var (key, verdict) in _verdicts)
            if (!verdicts.ContainsKey(key) && verdict.ExpiresAt > sentAt)
                verdicts[key] = verdict;

        var slots = new Dictionary<string, SlotEntry>(StringComparer.Ordinal);
        foreach (var (backend, held) in _backendSlots)
            if (held.Entry is { } entry)
                slots[backend] = entry;

        _verdicts = verdicts.ToFrozenDictionary();
        _slots = slots.ToFrozenDictionary(StringComparer.Ordinal);
        Volatile.Write(ref _liveEdges, liveEdges);
        var previousVersion = Interlocked.Exchange(ref _configVersion, response.ConfigVersion);
        if (previousVersion != response.ConfigVersion)
            ConfigVersionChanged(_log, response.ConfigVersion);
        _lastSuccess = sentAt;
        _lastError = null;
        var hadFailures = Interlocked.Exchange(ref _failures, 0);
        if (hadFailures > 0)
            Recovered(_log, _edge.Value, hadFailures);
        PublishAllowances();
        PublishStatus();
        AllowancesChanged?.Invoke();
    }

    private void PublishAllowances()
    {
        var map = new Dictionary<string, AllowanceEntry>(_tenants.Count, StringComparer.Ordinal);
        foreach (var (tenant, slot) in _tenants)
            if (slot.Lease is { } lease)
            {
                if (!ReferenceEquals(lease, slot.Published))
                {
                    slot.Published = lease with { Version = ++_allowanceVersion };
                    slot.Lease = slot.Published;
                }
                map[tenant] = slot.Published!;
            }
        _allowances = map.ToFrozenDictionary(StringComparer.Ordinal);
    }

    private PolicyClientState StateOf(int degradedTenants)
    {
        if (Volatile.Read(ref _failures) == 0)
            return _lastSuccess is null ? PolicyClientState.Starting : PolicyClientState.Connected;
        return degradedTenants > 0 || _lastSuccess is null ? PolicyClientState.Degraded : PolicyClientState.Retrying;
    }

    private void PublishStatus()
    {
        var status = Status;
        if (status.State == _reportedState)
            return;
        var previous = _reportedState;
        _reportedState = status.State;
        if (status.State == PolicyClientState.Degraded)
            EnteredDegraded(_log, _edge.Value, status.DegradedTenants, status.LiveEdges, status.LastError);
        StateChanged(_log, _edge.Value, previous, status.State);
        StatusChanged?.Invoke(status);
    }

    private static int StableSeed(string text)
    {
        var hash = 2166136261u;
        foreach (var c in text)
            hash = (hash ^ c) * 16777619u;
        return (int)hash;
    }

    private sealed class TenantSlot
    {
        public DateTimeOffset LastActivity;
        public double Demand;
        public bool HasDemand;
        public double DebtRu;
        public bool Constrained;
        public double UnsentUsedRu;
        public long UnsentAdmitted;
        public long UnsentThrottled;
        public long UnsentShed;
        public long AppliedSequence;
        public AllowanceEntry? Lease;
        public AllowanceEntry? Published;
    }

    private sealed class BackendSlot
    {
        public long Sequence;
        public long AppliedSequence;
        public int Slots;
        public SlotEntry? Entry;
    }

    private sealed record AllowanceEntry
    {
        public double RuPerSecond { get; init; }
        public double BurstRu { get; init; }
        public DateTimeOffset ValidUntil { get; init; }
        public bool Unlimited { get; init; }
        public double BudgetRuPerSecond { get; init; }
        public double BudgetBurstRu { get; init; }
        public int LiveEdges { get; init; }
        public long Version { get; init; }
    }

    private sealed record SlotEntry(int Slots, DateTimeOffset ValidUntil, bool Unlimited, int LimitSlots, int LiveEdges);

    private sealed record LocalVerdict(RunawayVerdict Verdict, DateTimeOffset ExpiresAt);

    [LoggerMessage(EventId = 800, Level = LogLevel.Information, Message = "Policy client for edge {Edge} started on {Tier}")]
    private static partial void ClientStarted(ILogger logger, string edge, string tier);

    [LoggerMessage(EventId = 801, Level = LogLevel.Warning, Message = "Policy exchange of edge {Edge} failed ({Failures} in a row), retrying in {DelayMs:0} ms: {Reason}")]
    private static partial void ExchangeFailed(ILogger logger, string edge, int failures, double delayMs, string reason);

    [LoggerMessage(EventId = 802, Level = LogLevel.Warning, Message = "Edge {Edge} is degraded: {Tenants} tenants on local-only shares (1/{LiveEdges} of their budgets) until the policy tier answers: {Reason}")]
    private static partial void EnteredDegraded(ILogger logger, string edge, int tenants, int liveEdges, string? reason);

    [LoggerMessage(EventId = 803, Level = LogLevel.Information, Message = "Policy client of edge {Edge}: {Previous} -> {State}")]
    private static partial void StateChanged(ILogger logger, string edge, PolicyClientState previous, PolicyClientState state);

    [LoggerMessage(EventId = 804, Level = LogLevel.Information, Message = "Policy tier reachable again for edge {Edge} after {Failures} failed exchanges")]
    private static partial void Recovered(ILogger logger, string edge, int failures);

    [LoggerMessage(EventId = 806, Level = LogLevel.Debug, Message = "Edge {Edge} dropped {Count} cheap query shapes from its report (over the per-exchange cap)")]
    private static partial void FingerprintsDropped(ILogger logger, string edge, int count);

    [LoggerMessage(EventId = 805, Level = LogLevel.Information, Message = "Policy configuration version {Version} in force")]
    private static partial void ConfigVersionChanged(ILogger logger, long version);
}
