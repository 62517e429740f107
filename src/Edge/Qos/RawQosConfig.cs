namespace MProxy.Edge.Qos;

// The YAML shape of the `qos:` section, as written by users (camelCase keys). Kept apart from the
// validated, immutable QosConfig so that every key can be checked and reported by its path. The
// main loader adds `public RawQosConfig? Qos { get; set; }` to RawConfig and calls
// QosConfigValidator.Validate(raw.Qos).
#pragma warning disable CA1812 // instantiated by the YAML deserializer
#pragma warning disable CA2227 // collection setters are what the deserializer uses

internal sealed class RawQosConfig
{
    public bool? Enabled { get; set; }
    public string? TenantFrom { get; set; }
    public string? DefaultGroup { get; set; }
    public int? MaxTenants { get; set; }
    public string? HintPolicy { get; set; }
    public RawRuWeights? RuWeights { get; set; }
    public Dictionary<string, RawRuWeights>? RuWeightsByDatabase { get; set; }
    public RawCoDel? Codel { get; set; }
    public List<RawResourceGroup>? Groups { get; set; }
    public List<RawTenant>? Tenants { get; set; }
    public RawRunaway? Runaway { get; set; }
}

internal sealed class RawRuWeights
{
    public double? ReadBase { get; set; }
    public double? WriteBase { get; set; }
    public double? ReadPerByte { get; set; }
    public double? WritePer4KiB { get; set; }
    public double? LatencyPerMs { get; set; }
}

internal sealed class RawCoDel
{
    public bool? Enabled { get; set; }
    public int? TargetMs { get; set; }
    public int? IntervalMs { get; set; }
}

internal sealed class RawResourceGroup
{
    public string? Name { get; set; }
    public double? RuPerSecond { get; set; }
    public double? Burst { get; set; }
    public double? DebtMax { get; set; }
    public string? Priority { get; set; }
    public double? Weight { get; set; }
    public int? MaxConcurrent { get; set; }
    public int? StatementTimeoutMs { get; set; }
    public int? QueueTimeoutMs { get; set; }
    public int? MaxBudgetWaitMs { get; set; }
    public Dictionary<string, string>? ServerSettings { get; set; }
    public List<string>? Alternatives { get; set; }
}

internal sealed class RawTenant
{
    public string? Name { get; set; }
    public string? Group { get; set; }
    public List<string>? Match { get; set; }
    public List<string>? AllowedGroups { get; set; }
}

internal sealed class RawRunaway
{
    public int? MaxVerdicts { get; set; }
    public int? FingerprintStatsSize { get; set; }
    public List<RawRunawayRule>? Rules { get; set; }
}

internal sealed class RawRunawayRule
{
    public string? Name { get; set; }
    public string? Tenant { get; set; }
    public string? Fingerprint { get; set; }
    public double? MaxRuPerExecution { get; set; }
    public int? MaxElapsedMs { get; set; }
    public string? Action { get; set; }
    public string? Scope { get; set; }
    public int? WatchMs { get; set; }
    public bool? Shadow { get; set; }
    public string? Priority { get; set; }
    public int? MaxConcurrent { get; set; }
    public double? RuPerSecond { get; set; }
}
