using MProxy.Simulation.Core;
using MProxy.Simulation.World;

namespace MProxy.Simulation.Invariants;

/// <summary>
/// Invariant: pool sizes stay within bounds — after every event, for every pool of every live edge:
/// open plus opening connections never exceed the pool's size, the pool's counters are consistent
/// (idle, active, opening ≥ 0), and they match what the fake servers see (connections the factory
/// opened and has not closed); no host has more connections than its max_connections; and at the
/// end of the drain nothing is leaked: every slot released, every connection back in its pool.
/// </summary>
public sealed class PoolChecks(SimContext sim)
{
    public long Checked { get; private set; }

    public void AfterEvent(SimWorld world)
    {
        foreach (var edge in world.Edges)
        {
            if (!edge.Up)
                continue;
            foreach (var pool in edge.AllPools)
            {
                Checked++;
                var stats = pool.Connections.GetStats();
                var factory = pool.Factory;
                if (stats.Total > stats.Size || stats.Idle < 0 || stats.Opening < 0 || stats.Active < 0)
                {
                    sim.Checks.Fail("pool-bounds", $"{pool.Name}: size {stats.Size}, total {stats.Total}, idle {stats.Idle}, active {stats.Active}, opening {stats.Opening}");
                    return;
                }
                if (factory.Live + factory.Opening != stats.Total)
                {
                    sim.Checks.Fail("pool-bounds", $"{pool.Name}: the pool counts {stats.Total} connections (open + opening) but {factory.Live} are open and {factory.Opening} opening");
                    return;
                }
                sim.Checks.Priority.CheckWorkConserving(pool.Scheduler);
            }
        }
        foreach (var host in world.Cluster.Hosts)
            if (host.ConnectionCount > host.Options.MaxConnections)
                sim.Checks.Fail("pool-bounds", $"{host.Name} has {host.ConnectionCount} connections, over max_connections {host.Options.MaxConnections}");
    }

    /// <summary>After the drain: every slot free, every live pool's connections idle, no connection attached.</summary>
    public void CheckNothingLeaked(SimWorld world)
    {
        foreach (var edge in world.Edges)
        {
            if (!edge.Up)
                continue;
            foreach (var pool in edge.AllPools)
            {
                var slots = pool.Scheduler.GetStats();
                if (slots.Busy != 0 || slots.WaitingHigh + slots.WaitingMedium + slots.WaitingLow != 0)
                {
                    sim.Checks.Fail("leak", $"{pool.Name}: {slots.Busy} scheduler slots still held and {slots.WaitingHigh + slots.WaitingMedium + slots.WaitingLow} waiting after every client left");
                    return;
                }
                var stats = pool.Connections.GetStats();
                if (stats.Active != 0 || stats.Waiting != 0)
                {
                    sim.Checks.Fail("leak", $"{pool.Name}: {stats.Active} connections still leased and {stats.Waiting} waiters after every client left");
                    return;
                }
            }
            foreach (var tenant in edge.Gate.GetTenants())
                foreach (var account in tenant.GetAccounts())
                    foreach (var pool in edge.AllPools)
                    {
                        var flow = account.FlowFor(pool.Scheduler);
                        var (_, _, inFlight, _) = pool.Scheduler.GetFlowStats(flow);
                        if (inFlight != 0)
                        {
                            sim.Checks.Fail("leak", $"{pool.Name}: tenant {tenant.Name} still holds {inFlight} slots");
                            return;
                        }
                    }
            if (edge.Sessions.Count != 0)
            {
                sim.Checks.Fail("leak", $"{edge.Name}: {edge.Sessions.Count} sessions still open after every client left");
                return;
            }
        }
        foreach (var host in world.Cluster.Hosts)
            if (host.Running != 0 && host.Up && !host.Frozen)
                sim.Checks.Fail("leak", $"{host.Name} still runs {host.Running} statements after every client left");
    }
}
