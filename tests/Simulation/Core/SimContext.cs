using MProxy.Simulation.Edges;
using MProxy.Simulation.Invariants;

namespace MProxy.Simulation.Core;

/// <summary>What every piece of one world shares: its clock, its trace, its seed and the invariant checks.</summary>
public sealed class SimContext
{
    public SimContext(ulong seed, SimClock clock, SimTrace trace)
    {
        Seed = seed;
        Clock = clock;
        Trace = trace;
        Random = new SimRandom(seed);
        Checks = new SimChecks(this);
    }

    public ulong Seed { get; }

    public SimClock Clock { get; }

    public SimTrace Trace { get; }

    /// <summary>The root stream; components take <see cref="SimRandom.Fork"/>s of it.</summary>
    public SimRandom Random { get; }

    public SimChecks Checks { get; }

    /// <summary>Sessions waiting for a scheduler slot, resumed after the event that ends their wait.</summary>
    public SlotWaits SlotWaits { get; } = new();

    private long _ids;

    /// <summary>A world-wide id for connections, sessions and requests (deterministic per run).</summary>
    public long NextId() => ++_ids;
}
