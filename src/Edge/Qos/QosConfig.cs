using MProxy.Abstractions;
using MProxy.Abstractions.ResourceUnits;

namespace MProxy.Edge.Qos;

/// <summary>
/// One immutable snapshot of the edge's QoS configuration (the <c>qos:</c> section): resource
/// groups, tenants and how logins map to them, RU weights per backend, CoDel and runaway rules.
/// Built by <see cref="QosConfigValidator"/>; a reload builds a new snapshot and hands it to
/// <c>QosGate.Reconfigure</c>.
/// </summary>
public sealed record QosConfig
{
    /// <summary>Name of the group that tenants without a configuration use.</summary>
    public const string DefaultGroupName = "default";

    /// <summary>Off unless the file has a <c>qos:</c> section: then every query is admitted and scheduled FIFO by the pool.</summary>
    public bool Enabled { get; init; }

    /// <summary>Which login attribute names the tenant.</summary>
    public TenantKeySource TenantFrom { get; init; } = TenantKeySource.User;

    /// <summary>The group of tenants that are not configured (each still gets its own bucket).</summary>
    public string DefaultGroup { get; init; } = DefaultGroupName;

    /// <summary>
    /// Bound on distinct tenants the edge tracks. Unconfigured tenants past it share one overflow
    /// tenant, so clients that invent names (application_name) cannot grow state without bound.
    /// </summary>
    public int MaxTenants { get; init; } = 10_000;

    /// <summary>The hint policy, by name (<see cref="HintPolicyNames"/>).</summary>
    public string HintPolicy { get; init; } = HintPolicyNames.Narrowing;

    /// <summary>RU weights of backends without their own.</summary>
    public RuWeights Weights { get; init; } = RuWeights.Default;

    /// <summary>RU weights per database name (as clients name it).</summary>
    public IReadOnlyDictionary<string, RuWeights> WeightsByDatabase { get; init; } = new Dictionary<string, RuWeights>(StringComparer.Ordinal);

    public CoDelSettings CoDel { get; init; } = new();

    public IReadOnlyList<ResourceGroupConfig> Groups { get; init; } = [new ResourceGroupConfig { Name = DefaultGroupName }];

    public IReadOnlyList<TenantConfig> Tenants { get; init; } = [];

    public RunawayConfig Runaway { get; init; } = new();

    /// <summary>QoS switched off: what an edge without a <c>qos:</c> section runs with.</summary>
    public static QosConfig Disabled { get; } = new();

    public ResourceGroupConfig? FindGroup(string name)
    {
        foreach (var group in Groups)
            if (group.Name == name)
                return group;
        return null;
    }

    public TenantConfig? FindTenant(string name)
    {
        foreach (var tenant in Tenants)
            if (tenant.Name == name)
                return tenant;
        return null;
    }

    /// <summary>The weights statements against <paramref name="database"/> are charged with.</summary>
    public RuWeights WeightsFor(string database) =>
        WeightsByDatabase.TryGetValue(database, out var weights) ? weights : Weights;
}

/// <summary>The login attribute a tenant's name is taken from.</summary>
public enum TenantKeySource
{
    User,
    Database,
    ApplicationName,

    /// <summary><c>user@database</c>.</summary>
    UserAndDatabase,
}

/// <summary>
/// A class of service. Every tenant using the group gets its own RU bucket of this size and its own
/// concurrency cap; the priority, weight, timeouts and server settings apply to each of its queries.
/// </summary>
public sealed record ResourceGroupConfig
{
    public required string Name { get; init; }

    /// <summary>Refill rate of each tenant's bucket. 0: refilled only by leases from the policy tier.</summary>
    public double RuPerSecond { get; init; } = 1000;

    /// <summary>Bucket capacity: RU a tenant may spend at once after being idle.</summary>
    public double Burst { get; init; } = 1000;

    /// <summary>How far in-flight charges may push a bucket below zero; charges beyond it are forgiven (and counted).</summary>
    public double DebtMax { get; init; } = 1000;

    public Priority Priority { get; init; } = Priority.Medium;

    /// <summary>Relative share of RU among the tenants of one priority class when they compete.</summary>
    public double Weight { get; init; } = 1;

    /// <summary>Queries of one tenant running at once per pool; a tenant at its cap waits, others do not.</summary>
    public int MaxConcurrent { get; init; } = int.MaxValue;

    /// <summary>Statement timeout; <see cref="TimeSpan.Zero"/> for none. Hints may only shorten it.</summary>
    public TimeSpan StatementTimeout { get; init; }

    /// <summary>Longest wait for a server slot; <see cref="TimeSpan.Zero"/>: the pool's wait timeout.</summary>
    public TimeSpan QueueTimeout { get; init; }

    /// <summary>
    /// Longest a query waits for its tenant's bucket to leave debt before it is refused; zero refuses
    /// at once. The wait is the bucket's exact retry-after, so it costs nothing while waiting.
    /// </summary>
    public TimeSpan MaxBudgetWait { get; init; } = TimeSpan.FromMilliseconds(100);

    /// <summary>Server settings (e.g. <c>work_mem</c>) applied while a query of this group runs, in order.</summary>
    public IReadOnlyList<KeyValuePair<string, string>> ServerSettings { get; init; } = [];

    /// <summary>Other groups a hint may switch a query of this group's tenants to.</summary>
    public IReadOnlyList<string> Alternatives { get; init; } = [];
}

/// <summary>A configured tenant.</summary>
public sealed record TenantConfig
{
    public required string Name { get; init; }

    /// <summary>The tenant's home resource group.</summary>
    public required string Group { get; init; }

    /// <summary>Further login values (of <see cref="QosConfig.TenantFrom"/>) that map to this tenant.</summary>
    public IReadOnlyList<string> Match { get; init; } = [];

    /// <summary>Groups besides the home group's alternatives a hint may switch this tenant's queries to.</summary>
    public IReadOnlyList<string> AllowedGroups { get; init; } = [];
}

/// <summary>CoDel on each priority queue of a scheduler (RFC 8289 control law).</summary>
public sealed record CoDelSettings
{
    public bool Enabled { get; init; } = true;

    /// <summary>Acceptable standing queueing delay.</summary>
    public TimeSpan Target { get; init; } = TimeSpan.FromMilliseconds(5);

    /// <summary>How long the delay must stay above target before shedding starts; drops then come every interval/√count.</summary>
    public TimeSpan Interval { get; init; } = TimeSpan.FromMilliseconds(100);
}

/// <summary>Runaway-query rules and the bounds of the state they keep.</summary>
public sealed record RunawayConfig
{
    /// <summary>At most 64 rules (each query tracks which fired in one 64-bit mask).</summary>
    public const int MaxRules = 64;

    public IReadOnlyList<RunawayRuleConfig> Rules { get; init; } = [];

    /// <summary>Bound on active verdicts; past it, new verdicts are dropped and counted.</summary>
    public int MaxVerdicts { get; init; } = 10_000;

    /// <summary>Fingerprints whose cost statistics are kept individually (top by RU); the rest are aggregated.</summary>
    public int FingerprintStatsSize { get; init; } = 1000;
}

/// <summary>What a runaway rule does to the fingerprint (or tenant) it caught.</summary>
public enum RunawayAction
{
    /// <summary>Report only.</summary>
    DryRun = 0,

    /// <summary>Further executions run at <see cref="RunawayRuleConfig.DeprioritizeTo"/>.</summary>
    Deprioritize = 1,

    /// <summary>Further executions are capped in concurrency and/or RU rate.</summary>
    Throttle = 2,

    /// <summary>The running execution is cancelled (SQLSTATE 57014) and further ones are refused while the verdict holds.</summary>
    Cancel = 3,
}

/// <summary>What a verdict applies to.</summary>
public enum RunawayScope
{
    /// <summary>Further executions of the same fingerprint by the same tenant.</summary>
    Fingerprint,

    /// <summary>All further queries of the tenant.</summary>
    Tenant,
}

/// <summary>
/// One runaway rule: when one execution goes above <see cref="MaxRuPerExecution"/> or
/// <see cref="MaxElapsed"/>, a verdict with <see cref="Action"/> holds for <see cref="Watch"/>.
/// </summary>
public sealed record RunawayRuleConfig
{
    public required string Name { get; init; }

    /// <summary>Only this tenant's queries; null for all.</summary>
    public string? Tenant { get; init; }

    /// <summary>Only this fingerprint; null for all.</summary>
    public ulong? Fingerprint { get; init; }

    /// <summary>RU threshold per execution; 0 for none.</summary>
    public double MaxRuPerExecution { get; init; }

    /// <summary>Elapsed-time threshold per execution; zero for none.</summary>
    public TimeSpan MaxElapsed { get; init; }

    public RunawayAction Action { get; init; } = RunawayAction.DryRun;

    public RunawayScope Scope { get; init; } = RunawayScope.Fingerprint;

    /// <summary>How long a verdict holds after the last execution that triggered it.</summary>
    public TimeSpan Watch { get; init; } = TimeSpan.FromMinutes(10);

    /// <summary>Decide and report what the rule would do, without doing it.</summary>
    public bool Shadow { get; init; }

    /// <summary>Priority of further executions under <see cref="RunawayAction.Deprioritize"/>.</summary>
    public Priority DeprioritizeTo { get; init; } = Priority.Low;

    /// <summary>Concurrency cap under <see cref="RunawayAction.Throttle"/>; 0 for none.</summary>
    public int ThrottleMaxConcurrent { get; init; }

    /// <summary>RU rate cap under <see cref="RunawayAction.Throttle"/>; 0 for none.</summary>
    public double ThrottleRuPerSecond { get; init; }
}
