using MProxy.Edge.Policy;
using MProxy.Grains.Budgets;
using MProxy.Grains.Hosting;
using MProxy.Simulation.Core;
using MProxy.Simulation.Policy;
using MProxy.Simulation.World;

namespace MProxy.Simulation.Invariants;

/// <summary>
/// Invariant: leases never exceed capacity —
/// <list type="bullet">
/// <item>in the grains, after every exchange, as the silo that served it sees them: the rates (and
/// bursts) of all unexpired leases the tenant-budget grain is committed to sum to at most the
/// tenant's budget (and burst), and the slots of the capacity-lease grain to at most the backend's
/// limit;</item>
/// <item>at the edges, at every sample: the lease rates the edges' policy clients hold in force for a
/// tenant sum to at most its budget (what can actually be spent, across clocks and lost replies).</item>
/// </list>
/// </summary>
public sealed class LeaseChecks(SimContext sim)
{
    private const double Tolerance = 1e-6;

    public long GrainChecks { get; private set; }

    public long EdgeChecks { get; private set; }

    /// <summary>The largest sum of edge-held lease rates seen, as a fraction of the budget, per tenant.</summary>
    public Dictionary<string, double> PeakEdgeLeaseFraction { get; } = new(StringComparer.Ordinal);

    public void OnSiloExchange(SimWorld world, SimSilo silo)
    {
        if (silo.Grains is not { } grains)
            return;
        var host = grains.Host;
        var now = host.Time.GetUtcNow();
        var config = grains.Config.Current;
        foreach (var tenant in config.Tenants)
        {
            GrainChecks++;
            var key = new MProxy.Grains.GrainKey(PolicyGrainFactory.TenantBudgetType, tenant.Tenant.Value);
            var state = host.ReadAsync(key, GrainStateJsonContext.Default.TenantBudgetState, CancellationToken.None).GetAwaiter().GetResult();
            if (state is null)
                continue;
            double rates = 0, bursts = 0;
            foreach (var entry in state.Edges)
            {
                var active = entry with { Leases = [.. entry.Leases.Where(l => l.ValidUntil > now)] };
                var (rate, burst) = TenantBudgetLogic.Committed(active);
                rates += rate;
                bursts += burst;
            }
            if (rates > tenant.RuPerSecond * (1 + Tolerance) + Tolerance || bursts > tenant.BurstRu * (1 + Tolerance) + Tolerance)
            {
                sim.Checks.Fail("lease-capacity", $"silo{silo.Index}: tenant {tenant.Tenant} has leases committing {SimTrace.F(rates)} RU/s (burst {SimTrace.F(bursts)}) of a budget of {tenant.RuPerSecond} RU/s (burst {tenant.BurstRu})");
                return;
            }
        }
        foreach (var backend in config.Backends)
        {
            GrainChecks++;
            var key = new MProxy.Grains.GrainKey(PolicyGrainFactory.CapacityLeaseType, backend.Backend.Value);
            var state = host.ReadAsync(key, GrainStateJsonContext.Default.CapacityState, CancellationToken.None).GetAwaiter().GetResult();
            if (state is null)
                continue;
            // The slots granted under unexpired leases (the largest per edge, as the grain counts
            // them). The grain also counts an edge's open connections as committed, but those are
            // the edge's pool size, not something the grain granted.
            var committed = 0;
            foreach (var entry in state.Edges)
            {
                var granted = 0;
                foreach (var lease in entry.Leases)
                    if (lease.ValidUntil > now)
                        granted = Math.Max(granted, lease.Slots);
                committed += granted;
            }
            if (committed > backend.MaxConnections)
            {
                sim.Checks.Fail("lease-capacity", $"silo{silo.Index}: backend {backend.Backend} has {committed} slots committed of a limit of {backend.MaxConnections}");
                return;
            }
        }
    }

    /// <summary>The lease rates the live edges hold in force, per tenant, against the budget.</summary>
    public void SampleEdges(SimWorld world)
    {
        foreach (var tenant in world.Options.Policy.Tenants)
        {
            EdgeChecks++;
            double held = 0;
            foreach (var edge in world.Edges)
                if (edge.Up && edge.Policy.TryGetAllowance(tenant.Tenant.Value, out var allowance) && allowance.Source == AllowanceSource.Lease)
                    held += allowance.RuPerSecond;
            var fraction = held / tenant.RuPerSecond;
            if (fraction > PeakEdgeLeaseFraction.GetValueOrDefault(tenant.Tenant.Value))
                PeakEdgeLeaseFraction[tenant.Tenant.Value] = fraction;
            if (held > tenant.RuPerSecond * (1 + Tolerance) + Tolerance)
            {
                sim.Checks.Fail("lease-capacity", $"the edges hold leases of {SimTrace.F(held)} RU/s in force for tenant {tenant.Tenant}, over its budget of {tenant.RuPerSecond} RU/s");
                return;
            }
        }
    }
}
