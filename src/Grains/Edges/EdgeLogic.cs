using MProxy.Abstractions.Policy;

namespace MProxy.Grains.Edges;

/// <summary>Membership: an edge is live while it keeps reporting. Pure.</summary>
public static class EdgeLogic
{
    public static EdgeState Heartbeat(EdgeState state, EdgeHeartbeat heartbeat, DateTimeOffset now) => state with
    {
        FirstSeen = state.Exchanges == 0 ? now : state.FirstSeen,
        LastSeen = now,
        Sequence = heartbeat.Sequence,
        Exchanges = state.Exchanges + 1,
        ConfigVersion = heartbeat.ConfigVersion,
        Degraded = heartbeat.Degraded,
        Tenants = heartbeat.Tenants,
        Fingerprints = heartbeat.Fingerprints,
        Backends = heartbeat.Backends,
    };

    public static bool IsLive(EdgeState state, PolicyConfig config, DateTimeOffset now) => now - state.LastSeen < config.EdgeLiveness;

    public static EdgeView View(EdgeState state, PolicyConfig config, EdgeId edge, DateTimeOffset now) => new()
    {
        Edge = edge,
        FirstSeen = state.FirstSeen,
        LastSeen = state.LastSeen,
        Live = IsLive(state, config, now),
        Degraded = state.Degraded,
        Sequence = state.Sequence,
        Exchanges = state.Exchanges,
        ConfigVersion = state.ConfigVersion,
        Tenants = state.Tenants,
    };
}
