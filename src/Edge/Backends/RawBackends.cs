namespace MProxy.Edge.Backends;

// The YAML shape of a database's `backends:` section, as users write it; BackendsConfigValidator
// turns it into a BackendsConfig, reporting errors by key path. The lead's RawDatabase holds one
// of these (`public RawBackends? Backends { get; set; }`), deserialized with camelCase names.
#pragma warning disable CA1812 // instantiated by the YAML deserializer
#pragma warning disable CA2227 // collection setters are what the deserializer uses

internal sealed class RawBackends
{
    public string? Primary { get; set; }
    public List<string>? Replicas { get; set; }
    public List<string>? Hosts { get; set; }
    public RawMonitor? Monitor { get; set; }
    public RawHealthCheck? HealthCheck { get; set; }
    public RawBreaker? Breaker { get; set; }
    public long? MaxReplicaLagBytes { get; set; }
    public int? MaxReplicaLagMs { get; set; }
    public bool? PrimaryServesReads { get; set; }
    public bool? ReadYourWrites { get; set; }
    public int? StickinessMs { get; set; }
    public List<string>? WriteFunctions { get; set; }
    public List<string>? ExtraWriteFunctions { get; set; }
    public int? FailoverWaitMs { get; set; }
    public int? LatencyDecayMs { get; set; }
    public int? Seed { get; set; }
}

internal sealed class RawMonitor
{
    public string? User { get; set; }
    public string? Password { get; set; }
    public string? Database { get; set; }
}

internal sealed class RawHealthCheck
{
    public int? IntervalMs { get; set; }
    public int? TimeoutMs { get; set; }
}

internal sealed class RawBreaker
{
    public int? FailuresToOpen { get; set; }
    public int? CooldownMs { get; set; }
    public int? CooldownMaxMs { get; set; }
    public double? Jitter { get; set; }
}
