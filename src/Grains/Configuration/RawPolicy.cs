namespace MProxy.Grains.Configuration;

// The policy file's shape as users write it (YAML, or JSON, which YAML reads too). Kept apart from
// the validated PolicyConfig so every key can be checked and reported by its path.
#pragma warning disable CA1812 // instantiated by the YAML deserializer
#pragma warning disable CA2227 // collection setters are what the deserializer uses

internal sealed class RawPolicy
{
    public long? Version { get; set; }
    public int? LeasePeriodMs { get; set; }
    public int? ExchangeIntervalMs { get; set; }
    public int? EdgeLivenessMs { get; set; }
    public double? DemandHeadroom { get; set; }
    public double? IdleShareFraction { get; set; }
    public RawTenant? DefaultTenant { get; set; }
    public List<RawTenant>? Tenants { get; set; }
    public List<RawBackend>? Backends { get; set; }
    public RawRunaway? Runaway { get; set; }
}

internal sealed class RawTenant
{
    public string? Name { get; set; }
    public double? RuPerSecond { get; set; }
    public double? BurstRu { get; set; }
}

internal sealed class RawBackend
{
    public string? Name { get; set; }
    public int? MaxConnections { get; set; }
}

internal sealed class RawRunaway
{
    public double? MinExecutions { get; set; }
    public int? HalfLifeMs { get; set; }
    public int? VerdictTtlMs { get; set; }
    public double? ThrottleRuPerSecond { get; set; }
    public RawThreshold? Deprioritize { get; set; }
    public RawThreshold? Throttle { get; set; }
    public RawThreshold? Reject { get; set; }
}

internal sealed class RawThreshold
{
    public double? RuPerExecution { get; set; }
    public double? LatencyMs { get; set; }
}
