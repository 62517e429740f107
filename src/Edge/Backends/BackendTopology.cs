using System.Collections.Immutable;
using MProxy.Edge.Configuration;

namespace MProxy.Edge.Backends;

/// <summary>The role of a host in one topology snapshot.</summary>
public enum BackendRole
{
    /// <summary>Never answered a probe (and, in discovery mode, not assumed to be anything).</summary>
    Unknown,

    /// <summary>The one host writes go to.</summary>
    Primary,

    /// <summary>Reported <c>pg_is_in_recovery() = true</c>.</summary>
    Replica,

    /// <summary>
    /// Reports it is not in recovery, but another host is the primary (an old primary still running
    /// after a promotion, or a split brain): it serves nothing.
    /// </summary>
    StalePrimary,
}

/// <summary>Why a host does or does not take reads in a snapshot.</summary>
public enum ReadEligibility
{
    /// <summary>A replica that qualifies: breaker closed, lag within the bound.</summary>
    Eligible,

    /// <summary>Not a replica (the primary, a stale primary, or of unknown role).</summary>
    NotReplica,

    /// <summary>No probe has succeeded yet, so its lag is unknown.</summary>
    NotProbed,

    /// <summary>Its breaker is open or half-open.</summary>
    BreakerOpen,

    /// <summary>Further behind than <see cref="BackendsConfig.MaxReplicaLagBytes"/>.</summary>
    LagBytes,

    /// <summary>Has not replayed WAL the primary had <see cref="BackendsConfig.MaxReplicaLag"/> ago.</summary>
    LagTime,
}

/// <summary>One host as one snapshot saw it. Immutable.</summary>
public sealed record BackendStatus
{
    /// <summary>Index in <see cref="BackendsConfig.Hosts"/>: the key of its breaker, load counters and (for the lead) pool.</summary>
    public required int Index { get; init; }

    public required HostPort Endpoint { get; init; }

    public required BackendRole Role { get; init; }

    public required BreakerState Breaker { get; init; }

    /// <summary>Failures since the last success (probes and reported connects).</summary>
    public int ConsecutiveFailures { get; init; }

    /// <summary>Whether the last probe succeeded.</summary>
    public bool Reachable { get; init; }

    /// <summary>Why the last probe failed, when it did.</summary>
    public string? LastError { get; init; }

    /// <summary>When the last successful probe finished (edge clock); null if none has.</summary>
    public DateTimeOffset? LastSeenAt { get; init; }

    /// <summary>The primary's current WAL position, or the replica's replay position, at the last successful probe.</summary>
    public Lsn Lsn { get; init; }

    /// <summary>On a replica: the last received WAL position.</summary>
    public Lsn ReceiveLsn { get; init; }

    /// <summary>On a primary: its timeline (0 unknown).</summary>
    public uint Timeline { get; init; }

    /// <summary>On a replica: WAL bytes the primary had at its last probe and this replica has not replayed; null when unknown.</summary>
    public long? LagBytes { get; init; }

    /// <summary>
    /// On a replica: how long ago the primary had WAL this replica has not replayed yet (a lower bound,
    /// to the probe interval); zero when caught up; null when unknown.
    /// </summary>
    public TimeSpan? LagTime { get; init; }

    /// <summary>On a replica: age of the last replayed transaction, as the replica reports it (informational: it grows while the primary is idle).</summary>
    public TimeSpan? ReplayAge { get; init; }

    public required ReadEligibility Eligibility { get; init; }

    public bool ServesReads => Eligibility == ReadEligibility.Eligible;

    /// <summary>The primary is usable for new work: its breaker is closed.</summary>
    public bool IsUsablePrimary => Role == BackendRole.Primary && Breaker == BreakerState.Closed;
}

/// <summary>
/// One immutable view of a database's hosts, published by <see cref="BackendMonitor"/> by swapping one
/// reference. The query path reads <see cref="BackendMonitor.Current"/> once and uses that object
/// from start to end, without locks.
/// </summary>
public sealed class BackendTopology
{
    internal BackendTopology(long generation, long primaryEpoch, int primaryIndex, ImmutableArray<BackendStatus> backends, ImmutableArray<int> readReplicas, DateTimeOffset builtAt)
    {
        Generation = generation;
        PrimaryEpoch = primaryEpoch;
        PrimaryIndex = primaryIndex;
        Backends = backends;
        ReadReplicas = readReplicas;
        BuiltAt = builtAt;
    }

    /// <summary>Increases with every published snapshot.</summary>
    public long Generation { get; }

    /// <summary>Increases each time <see cref="PrimaryIndex"/> changes (to another host or to none): the lead's cue to close pools.</summary>
    public long PrimaryEpoch { get; }

    /// <summary>The primary's index, or −1 when there is none (failover in progress, or not discovered yet).</summary>
    public int PrimaryIndex { get; }

    public BackendStatus? Primary => PrimaryIndex >= 0 ? Backends[PrimaryIndex] : null;

    /// <summary>A usable primary exists (its breaker is closed).</summary>
    public bool HasUsablePrimary => PrimaryIndex >= 0 && Backends[PrimaryIndex].Breaker == BreakerState.Closed;

    /// <summary>Every configured host, by index.</summary>
    public ImmutableArray<BackendStatus> Backends { get; }

    /// <summary>Indexes of the replicas that qualify for reads (before any read-your-writes token).</summary>
    public ImmutableArray<int> ReadReplicas { get; }

    public DateTimeOffset BuiltAt { get; }
}
