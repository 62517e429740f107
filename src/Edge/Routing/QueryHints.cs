using MProxy.Abstractions;

namespace MProxy.Edge.Routing;

/// <summary>Where a hint asks a statement to go.</summary>
public enum RouteHint
{
    None,
    Primary,
    Replica,
}

/// <summary>
/// What a magic comment (<c>/* mproxy: priority=low timeout=30s route=primary */</c> or
/// <c>-- mproxy: …</c>) asked for. These are requests, not grants: the QoS layer applies them only
/// where they narrow what the tenant's configuration allows (lower priority, shorter timeout,
/// another allowed resource group), never where they would widen it.
/// </summary>
public readonly record struct QueryHints
{
    public Priority? Priority { get; init; }

    /// <summary>Requested statement timeout.</summary>
    public TimeSpan? Timeout { get; init; }

    /// <summary>Requested resource group name.</summary>
    public string? ResourceGroup { get; init; }

    public RouteHint Route { get; init; }

    /// <summary>W3C trace context passed by the client, to link the query's span.</summary>
    public string? TraceParent { get; init; }

    /// <summary>How many hint items were malformed or unknown (ignored and counted).</summary>
    public int Ignored { get; init; }

    public bool IsEmpty => Priority is null && Timeout is null && ResourceGroup is null && Route == RouteHint.None && TraceParent is null && Ignored == 0;
}
