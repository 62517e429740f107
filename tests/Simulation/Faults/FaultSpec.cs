using System.Globalization;

namespace MProxy.Simulation.Faults;

public enum FaultKind
{
    /// <summary>The primary crashes (connections reset); a replica may be promoted after a delay; the host restarts after the duration.</summary>
    CrashPrimary,

    /// <summary>A replica crashes and restarts after the duration.</summary>
    CrashReplica,

    /// <summary>A host stops answering anything (frozen process, stuck disk) for the duration.</summary>
    Freeze,

    /// <summary>A host's statements and probes take <see cref="FaultSpec.Factor"/> times longer for the duration.</summary>
    Slowdown,

    /// <summary>A replica stops replaying WAL for the duration (its lag grows).</summary>
    PauseReplay,

    /// <summary>A replica is promoted while the old primary still runs (split brain); the old primary is fenced after the duration.</summary>
    PromoteWhilePrimaryUp,

    /// <summary>The listed edges cannot reach the listed silos for the duration.</summary>
    Partition,

    /// <summary>A silo process dies and restarts after the duration (the grain store survives).</summary>
    CrashSilo,

    /// <summary>An edge process dies (its clients' connections drop) and a new one starts after the duration.</summary>
    CrashEdge,

    /// <summary>Edge↔silo messages are lost with probability <see cref="FaultSpec.Factor"/> and slowed for the duration.</summary>
    LossyNetwork,

    /// <summary>A tenant's clients stop thinking between requests for the duration.</summary>
    Flood,
}

/// <summary>One scheduled fault: what, when, for how long, on what.</summary>
public sealed record FaultSpec(FaultKind Kind, TimeSpan At, TimeSpan Duration)
{
    /// <summary>Host, edge, silo or tenant index, depending on the kind.</summary>
    public int Target { get; init; }

    public double Factor { get; init; } = 1;

    /// <summary><see cref="FaultKind.CrashPrimary"/>: promote the most advanced replica this long after the crash (null: no promotion).</summary>
    public TimeSpan? PromoteAfter { get; init; }

    public IReadOnlyList<int> Edges { get; init; } = [];

    public IReadOnlyList<int> Silos { get; init; } = [];

    public override string ToString()
    {
        var c = CultureInfo.InvariantCulture;
        var text = string.Create(c, $"{Kind} at {At.TotalSeconds:0.###}s for {Duration.TotalSeconds:0.###}s target={Target}");
        if (Factor != 1)
            text += string.Create(c, $" factor={Factor:0.###}");
        if (PromoteAfter is { } promote)
            text += string.Create(c, $" promote-after={promote.TotalSeconds:0.###}s");
        if (Edges.Count > 0)
            text += " edges=[" + string.Join(",", Edges) + "]";
        if (Silos.Count > 0)
            text += " silos=[" + string.Join(",", Silos) + "]";
        return text;
    }
}
