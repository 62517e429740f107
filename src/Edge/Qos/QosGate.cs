using System.Collections.Concurrent;
using MProxy.Edge.Policy;

namespace MProxy.Edge.Qos;

/// <summary>
/// The QoS facade of an edge: resolves tenants at login, opens a <see cref="QosSession"/> per client
/// session, creates a <see cref="QosScheduler"/> per pool, ticks running statements (the janitor),
/// and holds what is shared — the configuration snapshot, the hint policy, runaway verdicts and
/// fingerprint statistics. Knows nothing of any wire protocol.
/// </summary>
/// <remarks>
/// Thread-safe. Tenant lookup at login is lock-free for known tenants; creating a tenant, opening or
/// closing a session and creating a scheduler take one lock each (never per statement).
/// </remarks>
internal sealed class QosGate : IDisposable
{
    /// <summary>The tenant that unconfigured tenants share once <see cref="QosConfig.MaxTenants"/> are tracked.</summary>
    public const string OverflowTenant = "(overflow)";

    /// <summary>The tenant of logins whose tenant attribute is empty (e.g. no application_name).</summary>
    public const string UnnamedTenant = "(unnamed)";

    private readonly ConcurrentDictionary<string, TenantQos> _tenants = new(StringComparer.Ordinal);
    private readonly Lock _tenantLock = new();
    private readonly Lock _sessionLock = new();
    private readonly List<QosSession> _sessions = [];
    private readonly List<QosScheduler> _schedulers = [];
    private QosSession[] _tickBuffer = [];
    private volatile GateSnapshot _snapshot;
    private int _tenantCount;

    public QosGate(QosConfig config, TimeProvider time, QosPolicySeams? policy = null)
    {
        Time = time;
        Policy = policy ?? new QosPolicySeams();
        HintCounters = new HintCounters();
        _snapshot = new GateSnapshot(config, HintCounters);
        Runaway = new RunawayMonitor(config.Runaway, time);
        Fingerprints = new FingerprintStats(config.Runaway.FingerprintStatsSize, Math.Min(8, config.Runaway.FingerprintStatsSize));
    }

    public TimeProvider Time { get; }

    /// <summary>The policy tier's allowance, verdict and usage seams (each may be absent).</summary>
    public QosPolicySeams Policy { get; }

    public QosConfig Config => _snapshot.Config;

    /// <summary>How hints were applied or ignored (exported as metrics).</summary>
    public HintCounters HintCounters { get; }

    public RunawayMonitor Runaway { get; }

    public FingerprintStats Fingerprints { get; }

    internal GateSnapshot Snapshot => _snapshot;

    /// <summary>The tenant of a login (<see cref="QosConfig.TenantFrom"/>, then the tenants' <c>match</c> lists), created on first use.</summary>
    public TenantQos ResolveTenant(in TenantIdentity identity)
    {
        var snapshot = _snapshot;
        var key = snapshot.Config.TenantFrom switch
        {
            TenantKeySource.Database => identity.Database,
            TenantKeySource.ApplicationName => identity.ApplicationName,
            TenantKeySource.UserAndDatabase => identity.User + "@" + identity.Database,
            _ => identity.User,
        };
        if (string.IsNullOrEmpty(key))
            key = UnnamedTenant;
        var name = snapshot.Match.TryGetValue(key, out var mapped) ? mapped : key;
        if (_tenants.TryGetValue(name, out var tenant))
            return tenant;
        lock (_tenantLock)
        {
            if (_tenants.TryGetValue(name, out tenant))
                return tenant;
            var config = _snapshot.Config;
            if (config.FindTenant(name) is null && _tenantCount >= config.MaxTenants)
            {
                name = OverflowTenant;
                if (_tenants.TryGetValue(name, out tenant))
                    return tenant;
            }
            tenant = new TenantQos(name, _tenantCount++, Time);
            tenant.Apply(config);
            _tenants[name] = tenant;
            return tenant;
        }
    }

    /// <summary>Every tenant tracked (a snapshot).</summary>
    public List<TenantQos> GetTenants() => [.. _tenants.Values];

    /// <summary>Opens the QoS state of a client session; dispose it when the session ends.</summary>
    public QosSession OpenSession(TenantQos tenant, IRunawayTarget? target = null)
    {
        var session = new QosSession(this, tenant, target);
        lock (_sessionLock)
        {
            session.RegistryIndex = _sessions.Count;
            _sessions.Add(session);
        }
        return session;
    }

    internal void Unregister(QosSession session)
    {
        lock (_sessionLock)
        {
            var index = session.RegistryIndex;
            if (index < 0)
                return;
            var last = _sessions[^1];
            _sessions[index] = last;
            last.RegistryIndex = index;
            _sessions.RemoveAt(_sessions.Count - 1);
            session.RegistryIndex = -1;
        }
    }

    /// <summary>Sessions open (for metrics).</summary>
    public int SessionCount
    {
        get
        {
            lock (_sessionLock)
                return _sessions.Count;
        }
    }

    /// <summary>A scheduler for one pool, with the configuration's CoDel settings; the gate reconfigures and disposes it.</summary>
    public QosScheduler CreateScheduler(string name, int capacity)
    {
        lock (_sessionLock)
        {
            var scheduler = new QosScheduler(name, capacity, _snapshot.Config.CoDel, Time, _schedulers.Count);
            _schedulers.Add(scheduler);
            return scheduler;
        }
    }

    /// <summary>
    /// Periodic work (the janitor, about every second; more often gives finer runaway detection):
    /// charges every running statement's latency and bytes so far, reports runaway hits to the
    /// session's <see cref="IRunawayTarget"/> (cancelling where a rule says so), sweeps lapsed
    /// verdicts, and exchanges with the policy seams (leased allowances in, debt out). Returns how
    /// many statements are to be cancelled.
    /// </summary>
    public int Tick()
    {
        int count;
        QosSession[] sessions;
        lock (_sessionLock)
        {
            count = _sessions.Count;
            if (_tickBuffer.Length < count)
                _tickBuffer = new QosSession[Math.Max(count, _tickBuffer.Length * 2)];
            _sessions.CopyTo(_tickBuffer);
            sessions = _tickBuffer;
        }
        var cancels = 0;
        for (var i = 0; i < count; i++)
        {
            var session = sessions[i];
            var tick = session.Tick();
            if (tick.MustCancel)
                cancels++;
            if (tick.Hit.Fired)
                session.Target?.OnRunaway(session, tick.Hit, tick.Cancel);
        }
        Array.Clear(sessions, 0, count);
        Runaway.Sweep();
        if (Policy.Allowance is not null || Policy.Usage is not null)
            SyncPolicy();
        return cancels;
    }

    /// <summary>Applies each tenant's leased allowance to its home bucket (when its version changed) and reports its debt.</summary>
    private void SyncPolicy()
    {
        foreach (var (_, tenant) in _tenants)
        {
            var home = tenant.Home;
            if (Policy.Allowance is { } allowances)
            {
                if (!allowances.TryGetAllowance(tenant.Name, out var allowance))
                    home.ApplyAllowance(null, long.MinValue + 1);
                else if (allowance.Source == AllowanceSource.Unlimited || !double.IsFinite(allowance.RuPerSecond))
                    home.ApplyAllowance(null, allowance.Version);
                else
                    home.ApplyAllowance(new RuBucketSettings(allowance.RuPerSecond, allowance.BurstRu, home.Group.DebtMax), allowance.Version);
            }
            Policy.Usage?.ReportDebt(tenant.Name, Math.Max(0, -home.Bucket.Balance));
        }
    }

    /// <summary>
    /// Imports the policy tier's verdict on a tenant's fingerprint into the local monitor (on an
    /// admission that found none locally); true when one was imported.
    /// </summary>
    internal bool TryImportVerdict(TenantQos tenant, ulong fingerprint)
    {
        if (Policy.Verdicts is not { } verdicts || !verdicts.TryGetVerdict(tenant.Name, fingerprint, out var verdict))
            return false;
        if (QosPolicySeams.ToRule(verdict, Time.GetUtcNow()) is not { } rule)
            return false;
        return Runaway.Place(rule, tenant.Id, tenant.Name, fingerprint) is not null;
    }

    /// <summary>
    /// Applies a reloaded configuration: tenants' groups, buckets and weights, CoDel settings and
    /// runaway rules. Statements in flight finish under the snapshot they started with.
    /// </summary>
    public void Reconfigure(QosConfig config)
    {
        _snapshot = new GateSnapshot(config, HintCounters);
        Runaway.Reconfigure(config.Runaway);
        lock (_tenantLock)
            foreach (var (_, tenant) in _tenants)
                tenant.Apply(config);
        QosScheduler[] schedulers;
        lock (_sessionLock)
            schedulers = [.. _schedulers];
        foreach (var scheduler in schedulers)
            scheduler.Reconfigure(scheduler.Capacity, config.CoDel);
    }

    public void Dispose()
    {
        QosScheduler[] schedulers;
        lock (_sessionLock)
            schedulers = [.. _schedulers];
        foreach (var scheduler in schedulers)
            scheduler.Dispose();
    }

    /// <summary>What one configuration makes of the shared parts: the policy and the login-value map.</summary>
    internal sealed class GateSnapshot
    {
        public GateSnapshot(QosConfig config, HintCounters counters)
        {
            Config = config;
            HintPolicy = HintPolicyNames.Create(config.HintPolicy, counters);
            foreach (var tenant in config.Tenants)
                foreach (var value in tenant.Match)
                    Match[value] = tenant.Name;
        }

        public QosConfig Config { get; }

        public IHintPolicy HintPolicy { get; }

        /// <summary>Login values that map to a differently named tenant.</summary>
        public Dictionary<string, string> Match { get; } = new(StringComparer.Ordinal);
    }
}
