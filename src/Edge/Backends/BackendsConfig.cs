using MProxy.Edge.Configuration;
using MProxy.Edge.Routing;

namespace MProxy.Edge.Backends;

/// <summary>How the edge learns which configured host is the primary.</summary>
public enum TopologyMode
{
    /// <summary>
    /// <c>primary</c> plus <c>replicas</c>: the configured primary is assumed to be the primary until
    /// a probe says otherwise; a replica that reports it was promoted still takes over (failover).
    /// </summary>
    Static,

    /// <summary><c>hosts</c>: no host is assumed; the primary is whichever host <c>pg_is_in_recovery()</c> says is not in recovery.</summary>
    Discover,
}

/// <summary>
/// The backends of one database, validated (<see cref="BackendsConfigValidator"/>): its hosts, health
/// checks, breaker, lag bound and routing switches. Immutable; a reload builds a new one.
/// </summary>
public sealed record BackendsConfig
{
    public TopologyMode Mode { get; init; } = TopologyMode.Static;

    /// <summary>
    /// Every host, each once. In <see cref="TopologyMode.Static"/> mode the first is the configured
    /// primary and the rest are the replicas. A host's index here is its backend index everywhere
    /// (snapshot, balancer, breaker).
    /// </summary>
    public required IReadOnlyList<HostPort> Hosts { get; init; }

    /// <summary>Hosts besides the primary: the replicas there are when all hosts are up.</summary>
    public int ReplicaCount => Hosts.Count - 1;

    /// <summary>
    /// The login the monitor uses for its own connection to every host. Null only for a single-host
    /// database with no monitor user to be found: it then has no health checks (and no
    /// <see cref="DatabaseBackends"/>), everything goes to its one host as before.
    /// </summary>
    public required MonitorCredentials? Monitor { get; init; }

    /// <summary>Time between the starts of two probe rounds. Default 1 s.</summary>
    public TimeSpan HealthCheckInterval { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>A probe that takes longer (connect, login and query together) fails. Default 1 s.</summary>
    public TimeSpan HealthCheckTimeout { get; init; } = TimeSpan.FromSeconds(1);

    public BreakerSettings Breaker { get; init; } = new();

    /// <summary>A replica further behind than this many WAL bytes stops receiving reads; null: no byte bound.</summary>
    public long? MaxReplicaLagBytes { get; init; }

    /// <summary>
    /// A replica that has not replayed WAL the primary had this long ago stops receiving reads; null: no
    /// time bound. Default 1 s. Measured with the probe interval's granularity (see the README).
    /// </summary>
    public TimeSpan? MaxReplicaLag { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>Whether reads go to the primary when no replica qualifies. Default true.</summary>
    public bool PrimaryServesReads { get; init; } = true;

    /// <summary>Whether a client's reads after its write go only where the write is visible. Default: on when replicas exist.</summary>
    public bool ReadYourWrites { get; init; } = true;

    /// <summary>A client's reads go to the primary for this long after its last write; zero: off (the default).</summary>
    public TimeSpan StickinessWindow { get; init; } = TimeSpan.Zero;

    /// <summary>The classifier's rules, holding the configured write functions.</summary>
    public RoutingRules Rules { get; init; } = RoutingRules.Default;

    /// <summary>How long a client waits for a usable primary (during a failover) before it gets 57P03. Default 10 s.</summary>
    public TimeSpan FailoverWait { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Time constant of the balancer's decaying latency average. Default 10 s.</summary>
    public TimeSpan LatencyDecay { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Seed of the breakers' jitter and the balancer's choices; null: derived from the database name.</summary>
    public int? Seed { get; init; }

    /// <summary>
    /// Value equality, host list included (a record compares lists by reference): a reload that
    /// leaves a database's backends as they were keeps its pools and monitor.
    /// </summary>
    public bool Equals(BackendsConfig? other) =>
        other is not null && (ReferenceEquals(this, other) ||
            Mode == other.Mode && Hosts.SequenceEqual(other.Hosts) && Monitor == other.Monitor
            && HealthCheckInterval == other.HealthCheckInterval && HealthCheckTimeout == other.HealthCheckTimeout && Breaker == other.Breaker
            && MaxReplicaLagBytes == other.MaxReplicaLagBytes && MaxReplicaLag == other.MaxReplicaLag
            && PrimaryServesReads == other.PrimaryServesReads && ReadYourWrites == other.ReadYourWrites
            && StickinessWindow == other.StickinessWindow && Rules == other.Rules && FailoverWait == other.FailoverWait
            && LatencyDecay == other.LatencyDecay && Seed == other.Seed);

    public override int GetHashCode() => HashCode.Combine(Mode, Hosts.Count > 0 ? Hosts[0] : default, Hosts.Count, Monitor, HealthCheckInterval, MaxReplicaLag, Seed);
}

/// <summary>Circuit breaker thresholds, the same for every backend of a database.</summary>
public sealed record BreakerSettings
{
    /// <summary>Consecutive failures (probes or connects) that open a closed breaker. Default 3.</summary>
    public int FailuresToOpen { get; init; } = 3;

    /// <summary>Cooldown after the first opening; it doubles with each failed half-open trial. Default 1 s.</summary>
    public TimeSpan CooldownBase { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>The cooldown never exceeds this. Default 30 s.</summary>
    public TimeSpan CooldownMax { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>The fraction of the cooldown removed at random (0: none, 0.5: up to half). Default 0.2.</summary>
    public double Jitter { get; init; } = 0.2;
}

/// <summary>The monitor's login. The password never appears in <see cref="ToString"/>.</summary>
public sealed record MonitorCredentials(string User, string? Password, string Database)
{
    public override string ToString() => $"MonitorCredentials {{ User = {User}, Database = {Database} }}";
}
