namespace MProxy.Grains.Edges;

/// <summary>The durable state of one <c>Edge(edge)</c> grain: the edge's membership record.</summary>
public sealed record EdgeState
{
    public static readonly EdgeState Initial = new();

    public DateTimeOffset FirstSeen { get; init; }

    public DateTimeOffset LastSeen { get; init; }

    public long Sequence { get; init; }

    public long Exchanges { get; init; }

    public long ConfigVersion { get; init; }

    public bool Degraded { get; init; }

    public int Tenants { get; init; }

    public int Fingerprints { get; init; }

    public int Backends { get; init; }
}
