using MProxy.Edge.Policy;

namespace MProxy.Edge.Pooling;

/// <summary>A pool as the policy tier's connection slots see it, whatever its protocol.</summary>
public interface ISlotLimitedPool
{
    PoolStats GetStats();

    /// <summary>Caps the pool at the granted slots (null: no global limit); see <see cref="ServerPool{TConnection}.LimitSlots"/>.</summary>
    void LimitSlots(int? slots);
}

/// <summary>
/// Connection slots shared with other edges through the policy tier: once per janitor tick, each
/// database's demand is reported and every pool of it is capped at the slots granted to this edge.
/// </summary>
public static class PoolCapacity
{
    /// <summary>
    /// A database's slots bound the connections all edges together hold to each of its hosts: its
    /// demand is its busiest pool's active, opening and waiting; what it holds, its largest pool.
    /// </summary>
    public static void Sync(IEnumerable<(string Database, ISlotLimitedPool Pool)> pools, ICapacityAllowance allowance, IPolicyUsageSink usage)
    {
        var demand = new Dictionary<string, (int Wanted, int Open)>();
        var all = new List<(string Database, ISlotLimitedPool Pool)>();
        foreach (var (database, pool) in pools)
        {
            all.Add((database, pool));
            var stats = pool.GetStats();
            var (wanted, open) = demand.GetValueOrDefault(database);
            demand[database] = (Math.Max(wanted, stats.Active + stats.Opening + stats.Waiting), Math.Max(open, stats.Total));
        }
        foreach (var (database, (wanted, open)) in demand)
            usage.ReportBackend(database, wanted, open);
        foreach (var (database, pool) in all)
            pool.LimitSlots(allowance.TryGetSlots(database, out var slots) ? slots : null);
    }
}
