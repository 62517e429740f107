namespace MProxy.Edge.Qos;

/// <summary>What a session knows about its client at login; the tenant is named from one of these (<see cref="QosConfig.TenantFrom"/>).</summary>
internal readonly record struct TenantIdentity(string User, string Database, string? ApplicationName);

/// <summary>
/// A tenant as the edge tracks it: a dense id, and one <see cref="TenantAccount"/> per resource group
/// it may use. Created at login by <c>QosGate.ResolveTenant</c> and kept for the edge's
/// lifetime (their number is bounded by <see cref="QosConfig.MaxTenants"/>). Thread-safe: the
/// profile is an immutable snapshot swapped whole on reload.
/// </summary>
internal sealed class TenantQos
{
    private readonly Lock _lock = new();
    private readonly Dictionary<string, TenantAccount> _accounts = new(StringComparer.Ordinal);
    private readonly TimeProvider _time;
    private volatile TenantProfile? _profile;

    internal TenantQos(string name, int id, TimeProvider time)
    {
        Name = name;
        Id = id;
        _time = time;
    }

    public string Name { get; }

    public int Id { get; }

    /// <summary>Home group first, then the groups a hint may switch to.</summary>
    public TenantProfile Profile => _profile ?? throw new InvalidOperationException($"tenant '{Name}' has no profile yet");

    /// <summary>Whether the tenant is in the configuration (rather than running on the default group).</summary>
    public bool IsConfigured => Profile.Config is not null;

    /// <summary>The account in the tenant's home group.</summary>
    public TenantAccount Home => Profile.Accounts[0];

    /// <summary>Every account the tenant has had (some may belong to groups a reload removed).</summary>
    public List<TenantAccount> GetAccounts()
    {
        lock (_lock)
            return [.. _accounts.Values];
    }

    /// <summary>Builds (or, on reload, rebuilds) the profile from a configuration snapshot.</summary>
    internal void Apply(QosConfig config)
    {
        var tenant = config.FindTenant(Name);
        var home = config.FindGroup(tenant?.Group ?? config.DefaultGroup)
            ?? throw new InvalidOperationException($"group '{tenant?.Group ?? config.DefaultGroup}' is not configured");
        var groups = new List<ResourceGroupConfig> { home };
        if (tenant is not null)
            foreach (var name in tenant.AllowedGroups)
                AddGroup(groups, config, name);
        foreach (var name in home.Alternatives)
            AddGroup(groups, config, name);
        var accounts = new TenantAccount[groups.Count];
        lock (_lock)
        {
            for (var i = 0; i < groups.Count; i++)
            {
                if (_accounts.TryGetValue(groups[i].Name, out var account))
                    account.Reconfigure(groups[i]);
                else
                    _accounts.Add(groups[i].Name, account = new TenantAccount(this, groups[i], _time));
                accounts[i] = account;
            }
        }
        _profile = new TenantProfile(tenant, [.. groups], accounts);
    }

    private static void AddGroup(List<ResourceGroupConfig> groups, QosConfig config, string name)
    {
        if (groups.Exists(g => g.Name == name))
            return;
        if (config.FindGroup(name) is { } group)
            groups.Add(group);
    }

    public override string ToString() => $"TenantQos {{ Name = {Name}, Id = {Id} }}";
}

/// <summary>A tenant's groups as one immutable snapshot: index 0 is the home group; <see cref="Accounts"/> parallels <see cref="Groups"/>.</summary>
internal sealed class TenantProfile(TenantConfig? config, ResourceGroupConfig[] groups, TenantAccount[] accounts)
{
    /// <summary>The tenant's configuration, or null for a tenant on the default group.</summary>
    public TenantConfig? Config { get; } = config;

    public ResourceGroupConfig[] Groups { get; } = groups;

    public TenantAccount[] Accounts { get; } = accounts;
}

/// <summary>
/// One tenant in one resource group: its RU bucket, its flow in each scheduler and its counters.
/// Thread-safe: counters are interlocked, the bucket and flows synchronize themselves, and flows are
/// created once per scheduler under a lock.
/// </summary>
internal sealed class TenantAccount
{
    private readonly Lock _lock = new();
    private volatile ResourceGroupConfig _group;
    private volatile SchedulerFlow?[] _flows = [];
    private long _admitted;
    private long _budgetRefused;
    private long _budgetWaits;
    private long _shed;
    private long _queueTimeouts;
    private long _runawayRefused;
    private long _runawayCancelled;
    private double _ruCharged;
    private long _allowanceVersion = long.MinValue;

    internal TenantAccount(TenantQos tenant, ResourceGroupConfig group, TimeProvider time)
    {
        Tenant = tenant;
        _group = group;
        Bucket = new RuBucket(RuBucketSettings.For(group), time);
    }

    public TenantQos Tenant { get; }

    /// <summary>The group's current configuration (replaced on reload).</summary>
    public ResourceGroupConfig Group => _group;

    /// <summary>The tenant's RU bucket in this group; the lease client grants into it.</summary>
    public RuBucket Bucket { get; }

    public long Admitted => Volatile.Read(ref _admitted);

    /// <summary>Statements refused because the bucket was in debt beyond the group's budget wait.</summary>
    public long BudgetRefused => Volatile.Read(ref _budgetRefused);

    /// <summary>Statements that waited for the bucket before being admitted or refused.</summary>
    public long BudgetWaits => Volatile.Read(ref _budgetWaits);

    public long Shed => Volatile.Read(ref _shed);

    public long QueueTimeouts => Volatile.Read(ref _queueTimeouts);

    /// <summary>Statements refused at admission by a runaway verdict (cancel or throttle).</summary>
    public long RunawayRefused => Volatile.Read(ref _runawayRefused);

    /// <summary>Running statements cancelled by a runaway rule.</summary>
    public long RunawayCancelled => Volatile.Read(ref _runawayCancelled);

    /// <summary>RU charged to this account's bucket since start (including what was forgiven at the debt bound).</summary>
    public double RuCharged => Volatile.Read(ref _ruCharged);

    /// <summary>This account's flow in <paramref name="scheduler"/>, created on first use.</summary>
    public SchedulerFlow FlowFor(QosScheduler scheduler)
    {
        var flows = _flows;
        var id = scheduler.Id;
        if ((uint)id < (uint)flows.Length && flows[id] is { } flow && ReferenceEquals(flow.Scheduler, scheduler))
            return flow;
        return CreateFlow(scheduler);
    }

    private SchedulerFlow CreateFlow(QosScheduler scheduler)
    {
        lock (_lock)
        {
            var flows = _flows;
            var id = scheduler.Id;
            if ((uint)id < (uint)flows.Length && flows[id] is { } existing && ReferenceEquals(existing.Scheduler, scheduler))
                return existing;
            var group = _group;
            var flow = scheduler.CreateFlow(Tenant.Name, group.Weight, group.MaxConcurrent);
            // Copy on write: readers use whichever array they loaded, without a lock.
            var grown = new SchedulerFlow?[Math.Max(id + 1, flows.Length)];
            Array.Copy(flows, grown, flows.Length);
            grown[id] = flow;
            _flows = grown;
            return flow;
        }
    }

    internal void Reconfigure(ResourceGroupConfig group)
    {
        lock (_lock)
        {
            _group = group;
            _allowanceVersion = long.MinValue; // the next policy sync re-applies any leased allowance
            Bucket.Reconfigure(RuBucketSettings.For(group));
            foreach (var flow in _flows)
                flow?.Scheduler.ReconfigureFlow(flow, group.Weight, group.MaxConcurrent);
        }
    }

    /// <summary>
    /// Sets the bucket from the policy tier's allowance (null: the group's local settings) when its
    /// <paramref name="version"/> differs from the last one applied.
    /// </summary>
    internal void ApplyAllowance(RuBucketSettings? settings, long version)
    {
        lock (_lock)
        {
            if (version == _allowanceVersion)
                return;
            _allowanceVersion = version;
            Bucket.Reconfigure(settings ?? RuBucketSettings.For(_group));
        }
    }

    internal void CountAdmitted() => Interlocked.Increment(ref _admitted);
    internal void CountBudgetRefused() => Interlocked.Increment(ref _budgetRefused);
    internal void CountBudgetWait() => Interlocked.Increment(ref _budgetWaits);
    internal void CountShed() => Interlocked.Increment(ref _shed);
    internal void CountQueueTimeout() => Interlocked.Increment(ref _queueTimeouts);
    internal void CountRunawayRefused() => Interlocked.Increment(ref _runawayRefused);
    internal void CountRunawayCancelled() => Interlocked.Increment(ref _runawayCancelled);

    /// <summary>Charges the bucket and counts the RU.</summary>
    internal void Charge(double ru)
    {
        if (!(ru > 0))
            return;
        Bucket.Charge(ru);
        CountCharged(ru);
    }

    /// <summary>Counts RU the bucket was charged with (lock-free add).</summary>
    internal void CountCharged(double ru)
    {
        var current = Volatile.Read(ref _ruCharged);
        while (true)
        {
            var seen = Interlocked.CompareExchange(ref _ruCharged, current + ru, current);
            if (seen.Equals(current))
                return;
            current = seen;
        }
    }

    public override string ToString() => $"TenantAccount {{ Tenant = {Tenant.Name}, Group = {Group.Name} }}";
}
