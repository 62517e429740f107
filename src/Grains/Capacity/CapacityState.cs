using MProxy.Abstractions.Policy;

namespace MProxy.Grains.Capacity;

/// <summary>The durable state of one <c>CapacityLease(backend)</c> grain.</summary>
public sealed record CapacityState
{
    public static readonly CapacityState Initial = new();

    public long LastSequence { get; init; }

    public IReadOnlyList<EdgeSlotEntry> Edges { get; init; } = [];
}

public sealed record EdgeSlotEntry
{
    public required EdgeId Edge { get; init; }

    public DateTimeOffset LastSeen { get; init; }

    public int Wanted { get; init; }

    public int Open { get; init; }

    /// <summary>Slot leases the edge may still be holding connections under (not expired, not superseded by one it complies with).</summary>
    public IReadOnlyList<GrantedSlots> Leases { get; init; } = [];
}

public sealed record GrantedSlots(long Sequence, int Slots, DateTimeOffset ValidUntil);
