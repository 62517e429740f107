namespace MProxy.Edge.Configuration;

// The YAML file's shape, as written by users. Kept apart from the validated, immutable
// EdgeConfig so that every key can be checked and reported by its path.
#pragma warning disable CA1812 // instantiated by the YAML deserializer
#pragma warning disable CA2227 // collection setters are what the deserializer uses

internal sealed class RawConfig
{
    public RawListen? Listen { get; set; }
    public RawClients? Clients { get; set; }
    public RawAuth? Auth { get; set; }
    public List<RawUser>? Users { get; set; }
    public RawPool? Pool { get; set; }
    public List<RawDatabase>? Databases { get; set; }
    public int? ShutdownTimeoutMs { get; set; }
    public MProxy.Edge.Qos.RawQosConfig? Qos { get; set; }
    public RawPolicy? Policy { get; set; }
    public MProxy.Edge.Telemetry.RawTelemetry? Telemetry { get; set; }
    public MProxy.Edge.Hosting.RawReload? Reload { get; set; }
    public RawTls? Tls { get; set; }
    public RawNetwork? Network { get; set; }
}

internal sealed class RawNetwork
{
    public string? Transport { get; set; }
    public int? EpollLoops { get; set; }
    public bool? EpollParking { get; set; }
}

internal sealed class RawPolicy
{
    public List<string>? Silos { get; set; }
    public string? File { get; set; }
    public string? EdgeId { get; set; }
    public int? CallTimeoutMs { get; set; }
    public int? BackoffBaseMs { get; set; }
    public int? BackoffMaxMs { get; set; }
    public double? LocalShareFloorRuPerSecond { get; set; }
    public int? MaxFingerprintsPerExchange { get; set; }
}

internal sealed class RawListen
{
    public string? Postgres { get; set; }
    public string? Admin { get; set; }
    public string? Mysql { get; set; }
}

internal sealed class RawClients
{
    public int? MaxConnections { get; set; }
    public int? MaxMessageBytes { get; set; }
    public int? LoginTimeoutMs { get; set; }
    public int? MaxPreparedStatements { get; set; }
}

internal sealed class RawAuth
{
    public string? Method { get; set; }
}

internal sealed class RawUser
{
    public string? Name { get; set; }
    public string? Password { get; set; }
    public string? ScramVerifier { get; set; }
    public string? Md5 { get; set; }
    public string? ServerPassword { get; set; }
    public bool? Admin { get; set; }
}

internal sealed class RawPool
{
    public string? Mode { get; set; }
    public int? Size { get; set; }
    public int? MinSize { get; set; }
    public int? WaitTimeoutMs { get; set; }
    public int? ConnectTimeoutMs { get; set; }
    public int? IdleTimeoutMs { get; set; }
    public int? LifetimeMs { get; set; }
    public int? CheckAfterIdleMs { get; set; }
    public string? CheckQuery { get; set; }
    public string? ResetQuery { get; set; }
    public int? MaxPreparedStatements { get; set; }
    public bool? DeferBegin { get; set; }
}

internal sealed class RawDatabase
{
    public string? Name { get; set; }
    public string? ServerDatabase { get; set; }
    public string? Primary { get; set; }
    public string? ServerUser { get; set; }
    public string? ServerPassword { get; set; }
    public RawPool? Pool { get; set; }
    public MProxy.Edge.Backends.RawBackends? Backends { get; set; }
    public string? Protocol { get; set; }
    public RawServerTls? ServerTls { get; set; }
    public bool? AllowLoadDataLocal { get; set; }
}
