using MProxy.Edge.Configuration;

namespace MProxy.Edge.Backends;

/// <summary>
/// What one health check of one host found: its role and WAL positions, or why it failed. On a
/// primary <see cref="Lsn"/> is <c>pg_current_wal_lsn()</c>; on a replica it is
/// <c>pg_last_wal_replay_lsn()</c>.
/// </summary>
public readonly record struct BackendProbeResult
{
    /// <summary>Null when the probe succeeded; otherwise why it failed (no secrets).</summary>
    public string? Error { get; init; }

    public bool Succeeded => Error is null;

    /// <summary><c>pg_is_in_recovery()</c>: true on a replica (standby), false on a primary.</summary>
    public bool InRecovery { get; init; }

    /// <summary>The primary's current WAL position, or the replica's replay position.</summary>
    public Lsn Lsn { get; init; }

    /// <summary>On a replica: the last WAL position received from the primary (<c>pg_last_wal_receive_lsn()</c>); else none.</summary>
    public Lsn ReceiveLsn { get; init; }

    /// <summary>On a primary: the timeline it writes (a promotion starts a higher one); 0 when unknown.</summary>
    public uint Timeline { get; init; }

    /// <summary>On a replica: <c>now() − pg_last_xact_replay_timestamp()</c> as the replica sees it; null when unknown.</summary>
    public TimeSpan? ReplayAge { get; init; }

    public static BackendProbeResult Primary(Lsn currentLsn, uint timeline = 0) =>
        new() { InRecovery = false, Lsn = currentLsn, Timeline = timeline };

    public static BackendProbeResult Replica(Lsn replayLsn, Lsn receiveLsn = default, TimeSpan? replayAge = null) =>
        new() { InRecovery = true, Lsn = replayLsn, ReceiveLsn = receiveLsn, ReplayAge = replayAge };

    public static BackendProbeResult Failed(string error) => new() { Error = error };
}

/// <summary>
/// Health checks of hosts: the monitor's only I/O, so that a simulation can replace it. An
/// implementation keeps whatever connection it needs per endpoint and reconnects after failures.
/// </summary>
/// <remarks>
/// <see cref="ProbeAsync"/> is called for different endpoints concurrently, never twice at once for
/// the same endpoint. It reports failures as <see cref="BackendProbeResult.Failed"/> or by throwing;
/// the monitor treats both alike, and a probe still running when its token is cancelled (the timeout)
/// as failed.
/// </remarks>
public interface IBackendProbe
{
    ValueTask<BackendProbeResult> ProbeAsync(HostPort endpoint, CancellationToken cancellationToken);
}
