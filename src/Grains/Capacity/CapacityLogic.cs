using MProxy.Abstractions.Policy;
using MProxy.Grains.Leasing;

namespace MProxy.Grains.Capacity;

/// <summary>
/// Leases one backend's connection slots to edges so that the sum over all edges stays under the
/// backend's limit. Pure. Same ledger as the tenant budget: per edge, the slot leases it may still be
/// holding connections under (and, while it is live, the connections it says are open) are committed
/// until they expire or the edge says it complies with a newer one; a grant never lets the sum of
/// commitments exceed the limit. Sizing is max-min fair over what live edges want (at least one
/// slot each), so an edge that wants it gets at least <c>limit / live edges</c>; slots nobody wants
/// stay free for whoever asks next.
/// </summary>
public static class CapacityLogic
{
    public static (CapacityState State, BackendSlotLease Lease) Exchange(
        CapacityState state, PolicyConfig config, BackendId backend, EdgeId edge, BackendSlotDemand demand, DateTimeOffset now)
    {
        var policy = config.FindBackend(backend);
        var others = new List<EdgeSlotEntry>(state.Edges.Count);
        EdgeSlotEntry? previous = null;
        foreach (var entry in state.Edges)
        {
            if (entry.Edge == edge)
            {
                previous = entry;
                continue;
            }
            var pruned = Prune(entry, now, 0);
            if (IsLive(pruned, config, now) || pruned.Leases.Count > 0)
                others.Add(pruned);
        }
        var me = Prune(previous ?? new EdgeSlotEntry { Edge = edge }, now, demand.AppliedLeaseSequence) with
        {
            LastSeen = now,
            Wanted = Math.Max(0, demand.Wanted),
            Open = Math.Max(0, demand.Open),
        };
        var live = new List<EdgeSlotEntry>(others.Count + 1);
        foreach (var entry in others)
            if (IsLive(entry, config, now))
                live.Add(entry);
        live.Add(me);
        // Sizing must not depend on who happens to call first: order live edges by id.
        live.Sort((a, b) => a.Edge.CompareTo(b.Edge));
        var myIndex = live.IndexOf(me);

        var sequence = state.LastSequence + 1;
        var validUntil = now + config.LeasePeriod;
        BackendSlotLease lease;
        if (policy is null)
        {
            lease = new BackendSlotLease { Backend = backend, Sequence = sequence, Unlimited = true, ValidUntil = validUntil, LiveEdges = live.Count };
        }
        else
        {
            var limit = Math.Max(0, policy.MaxConnections);
            var wants = new int[live.Count];
            for (var i = 0; i < live.Count; i++)
                wants[i] = Math.Max(1, live[i].Wanted);
            var target = FairShare.AllocateSlots(limit, wants)[myIndex];
            var othersCommitted = 0;
            foreach (var entry in others)
                othersCommitted += Committed(entry, config, now);
            var slots = Math.Clamp(Math.Min(target, limit - othersCommitted), 0, limit);
            me = me with { Leases = [.. me.Leases, new GrantedSlots(sequence, slots, validUntil)] };
            lease = new BackendSlotLease { Backend = backend, Sequence = sequence, Slots = slots, ValidUntil = validUntil, LimitSlots = limit, LiveEdges = live.Count };
        }
        others.Add(me);
        others.Sort((a, b) => a.Edge.CompareTo(b.Edge));
        return (state with { LastSequence = sequence, Edges = others }, lease);
    }

    /// <summary>Slots an edge may be holding: the largest outstanding lease, or its open connections while it is live.</summary>
    public static int Committed(EdgeSlotEntry entry, PolicyConfig config, DateTimeOffset now)
    {
        var slots = IsLive(entry, config, now) ? entry.Open : 0;
        foreach (var lease in entry.Leases)
            if (lease.ValidUntil > now)
                slots = Math.Max(slots, lease.Slots);
        return slots;
    }

    public static bool IsLive(EdgeSlotEntry entry, PolicyConfig config, DateTimeOffset now) => now - entry.LastSeen < config.EdgeLiveness;

    public static CapacityView View(CapacityState state, PolicyConfig config, BackendId backend, DateTimeOffset now)
    {
        var policy = config.FindBackend(backend);
        var leases = new List<EdgeSlotView>(state.Edges.Count);
        int committed = 0, live = 0;
        foreach (var entry in state.Edges)
        {
            var isLive = IsLive(entry, config, now);
            committed += Committed(entry, config, now);
            if (isLive)
                live++;
            GrantedSlots? newest = null;
            foreach (var lease in entry.Leases)
                if (lease.ValidUntil > now && (newest is null || lease.Sequence > newest.Sequence))
                    newest = lease;
            leases.Add(new EdgeSlotView(entry.Edge, newest?.Sequence ?? 0, newest?.Slots ?? 0, entry.Wanted, entry.Open, newest?.ValidUntil ?? entry.LastSeen, isLive));
        }
        return new CapacityView
        {
            Backend = backend,
            Unlimited = policy is null,
            LimitSlots = policy?.MaxConnections ?? 0,
            CommittedSlots = committed,
            LiveEdges = live,
            Leases = leases,
        };
    }

    private static EdgeSlotEntry Prune(EdgeSlotEntry entry, DateTimeOffset now, long appliedSequence)
    {
        var leases = new List<GrantedSlots>(entry.Leases.Count);
        foreach (var lease in entry.Leases)
            if (lease.ValidUntil > now && lease.Sequence >= appliedSequence)
                leases.Add(lease);
        return leases.Count == entry.Leases.Count ? entry : entry with { Leases = leases };
    }
}
