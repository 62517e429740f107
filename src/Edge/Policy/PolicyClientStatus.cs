namespace MProxy.Edge.Policy;

/// <summary>The policy client's connection to the tier.</summary>
public enum PolicyClientState
{
    /// <summary>No exchange has completed yet.</summary>
    Starting,

    /// <summary>The last exchange succeeded.</summary>
    Connected,

    /// <summary>Exchanges fail, but every lease is still valid: spending them.</summary>
    Retrying,

    /// <summary>Exchanges fail and some tenant's lease expired: it runs on a local-only share.</summary>
    Degraded,
}

/// <summary>A snapshot of the client's health, for metrics, logs and the admin API.</summary>
public sealed record PolicyClientStatus
{
    public PolicyClientState State { get; init; }

    public int ConsecutiveFailures { get; init; }

    public DateTimeOffset? LastSuccess { get; init; }

    public string? LastError { get; init; }

    /// <summary>Live edges in the last membership view (1 until the tier has answered).</summary>
    public int LiveEdges { get; init; } = 1;

    public long ConfigVersion { get; init; }

    /// <summary>Tenants currently on a local-only share.</summary>
    public int DegradedTenants { get; init; }

    public bool IsDegraded => State == PolicyClientState.Degraded;
}
