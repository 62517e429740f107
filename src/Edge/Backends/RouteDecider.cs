using MProxy.Edge.Routing;

namespace MProxy.Edge.Backends;

/// <summary>Where a transaction (or an autocommit statement) goes.</summary>
public enum RouteTarget
{
    /// <summary>The primary, <see cref="RouteDecision.Backend"/>.</summary>
    Primary,

    /// <summary>The replica <see cref="RouteDecision.Backend"/>.</summary>
    Replica,

    /// <summary>It needs the primary and there is no usable one now: wait with <see cref="BackendMonitor.WaitForPrimaryAsync"/>.</summary>
    WaitForPrimary,

    /// <summary>A read, no replica qualifies and the primary may not serve reads: refuse with 57P03.</summary>
    Unavailable,
}

/// <summary>Why a decision was made (for metrics, logs and tests).</summary>
public enum RouteReason
{
    /// <summary>The statement writes, locks, changes the session, or is not understood (includes BEGIN without READ ONLY).</summary>
    Write,

    /// <summary>The client's session holds state (SET, PREPARE, temp tables, session pooling): it stays on the primary.</summary>
    SessionState,

    /// <summary><c>/* mproxy: route=primary */</c>.</summary>
    HintPrimary,

    /// <summary>A serializable transaction: a hot standby refuses them.</summary>
    Serializable,

    /// <summary>Within the stickiness window after the client's last write.</summary>
    Sticky,

    /// <summary>No qualifying replica has replayed the client's causal token yet; the primary has it.</summary>
    TokenNotReplayed,

    /// <summary>A read on a qualifying replica.</summary>
    Read,

    /// <summary>A read, and no replica qualifies (none configured, all down or lagging).</summary>
    NoReplica,
}

/// <summary>The outcome of <see cref="RouteDecider.Decide"/>.</summary>
/// <param name="Target">Where the transaction goes.</param>
/// <param name="Reason">Which rule decided.</param>
/// <param name="Backend">The chosen host for <see cref="RouteTarget.Primary"/> and <see cref="RouteTarget.Replica"/>; null otherwise.</param>
public readonly record struct RouteDecision(RouteTarget Target, RouteReason Reason, BackendStatus? Backend)
{
    public int BackendIndex => Backend?.Index ?? -1;
}

/// <summary>
/// Decides where a transaction runs, from the statement that starts it (BEGIN, or the first statement
/// of an implicit transaction), its hint, whether the client's session holds state, the client's
/// causal token, and one topology snapshot.
/// </summary>
/// <remarks>
/// <para>Rules, first match wins: a write (by the classifier: anything not a pure read, including BEGIN
/// without READ ONLY and session-changing statements) → primary; a client with session state →
/// primary; <c>route=primary</c> → primary; a serializable BEGIN → primary; within the stickiness
/// window after the client's write → primary; otherwise a replica picked by
/// <see cref="ReplicaBalancer"/> among those that qualify and, with read-your-writes on, have replayed
/// the client's token. No such replica: the primary when the token is the reason or when the primary
/// may serve reads, else <see cref="RouteTarget.Unavailable"/>.</para>
/// <para><c>route=replica</c> never sends a write to a replica; on a read it waives the client's own
/// stickiness and read-your-writes (the client accepts older data for that read), but the lag bound
/// and breakers still apply.</para>
/// <para>Needing the primary when the snapshot has no usable one gives
/// <see cref="RouteTarget.WaitForPrimary"/>. Thread-safe (the balancer is); allocates nothing; reads
/// the clock only when a stickiness window is configured.</para>
/// </remarks>
public sealed class RouteDecider(BackendsConfig config, ReplicaBalancer balancer, TimeProvider time)
{
    public BackendsConfig Config { get; } = config;

    public RouteDecision Decide(in StatementInfo statement, bool sessionHasState, CausalToken token, BackendTopology topology)
    {
        if (statement.IsWrite)
            return ToPrimary(topology, RouteReason.Write);
        if (sessionHasState)
            return ToPrimary(topology, RouteReason.SessionState);
        var hint = statement.Hints.Route;
        if (hint == RouteHint.Primary)
            return ToPrimary(topology, RouteReason.HintPrimary);
        if (statement.Isolation == TransactionIsolation.Serializable && (statement.Transaction & (TransactionEffects.Begin | TransactionEffects.SetCharacteristics)) != 0)
            return ToPrimary(topology, RouteReason.Serializable);

        var waive = hint == RouteHint.Replica;
        if (!waive && token.WrittenAt != 0 && Config.StickinessWindow > TimeSpan.Zero
            && time.GetElapsedTime(token.WrittenAt) < Config.StickinessWindow)
        {
            return ToPrimary(topology, RouteReason.Sticky);
        }

        var minimum = !waive && Config.ReadYourWrites ? token.Lsn : Lsn.None;
        var replica = balancer.Pick(topology, minimum);
        if (replica >= 0)
            return new RouteDecision(RouteTarget.Replica, RouteReason.Read, topology.Backends[replica]);
        if (!minimum.IsNone && topology.ReadReplicas.Length > 0)
            return ToPrimary(topology, RouteReason.TokenNotReplayed);
        if (Config.PrimaryServesReads)
            return ToPrimary(topology, RouteReason.NoReplica);
        return new RouteDecision(RouteTarget.Unavailable, RouteReason.NoReplica, null);
    }

    private static RouteDecision ToPrimary(BackendTopology topology, RouteReason reason) =>
        topology.HasUsablePrimary
            ? new RouteDecision(RouteTarget.Primary, reason, topology.Primary)
            : new RouteDecision(RouteTarget.WaitForPrimary, reason, null);
}
