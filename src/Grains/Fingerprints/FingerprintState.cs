using MProxy.Abstractions.Policy;

namespace MProxy.Grains.Fingerprints;

/// <summary>
/// The durable state of one <c>Fingerprint(tenant, fingerprint)</c> grain: cost statistics merged
/// from all edges, decayed with a half-life, and the verdict in force.
/// </summary>
public sealed record FingerprintState
{
    public static readonly FingerprintState Initial = new();

    public string? Sample { get; init; }

    public DateTimeOffset LastUpdate { get; init; }

    /// <summary>Decayed number of executions.</summary>
    public double Executions { get; init; }

    public double Ru { get; init; }

    public double LatencyMs { get; init; }

    public double MaxRu { get; init; }

    public double MaxLatencyMs { get; init; }

    public long TotalExecutions { get; init; }

    public IReadOnlyList<EdgeMark> Edges { get; init; } = [];

    public RunawayVerdict? Verdict { get; init; }
}

public sealed record EdgeMark(EdgeId Edge, DateTimeOffset LastSeen);
