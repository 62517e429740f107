using System.Globalization;
using MProxy.Edge.Policy;
using MProxy.Simulation.Core;
using MProxy.Simulation.Edges;
using MProxy.Simulation.World;

namespace MProxy.Simulation.Invariants;

/// <summary>
/// Invariant: the RU a tenant is admitted — booked into its buckets on every edge together — stays
/// within its global budget plus burst plus the debt bound: over every window of length W (1 s to
/// the whole run, sampled every 100 ms),
/// <c>booked ≤ budget·W + burst·(edges alive in W ÷ edges configured) + debtMax·(edges alive in W)</c>,
/// and, when some edge could not reach the policy tier during the window or the lease period before
/// it, one lease period more: <c>+ budget·leasePeriod</c>; and (unless the options ask for the
/// strict bound) the local shares that edges cut off from the tier spent meanwhile.
/// </summary>
/// <remarks>
/// Booked RU is what the buckets accepted (<c>RuBucket.TotalBooked</c>); RU charged beyond the debt
/// bound is forgiven by design and not counted. A tenant first seen during a partition runs on its
/// group's local settings (budget ÷ edges), and one whose lease expired on a local share of the
/// budget: both are within the allowance.
/// <para>
/// The local share is the design's deliberate fail-open (DESIGN.md, "Degradation"): an edge cut off
/// from the tier keeps spending <c>budget ÷ live edges in its last view</c> for as long as the
/// partition lasts, while the tier, once the edge's liveness has lapsed, leases the whole budget to
/// the edges it still hears from. Over a long partition the tenant can then spend up to
/// <c>budget·(1 + 1/N)</c> — more than "budget plus one lease period" (seed 268 shows it). So the
/// default bound adds the local-share RU the cut-off edges were allowed during the window
/// (<see cref="FailOpenRu"/>); <c>SimOptions.StrictPartitionBudget</c> checks the strict bound.
/// </para>
/// </remarks>
public sealed class BudgetChecks(SimContext sim)
{
    public static readonly TimeSpan SampleInterval = TimeSpan.FromMilliseconds(100);

    private static readonly TimeSpan[] Windows = [.. new[] { 1, 2, 5, 10, 20, 40, 80 }.Select(s => TimeSpan.FromSeconds(s))];

    private readonly Dictionary<string, List<(long At, double Booked, double FailOpen)>> _series = new(StringComparer.Ordinal);
    private readonly List<(long At, bool Degraded)> _degraded = [];
    private readonly Dictionary<string, double> _failOpen = new(StringComparer.Ordinal);
    private long _lastSample = -1;
    private long _nextSample;

    /// <summary>Per tenant: the largest booked ÷ bound over all windows (1 = at the bound).</summary>
    public Dictionary<string, double> PeakRatio { get; } = new(StringComparer.Ordinal);

    public long WindowsChecked { get; private set; }

    /// <summary>Per tenant: RU the edges were allowed on local shares while cut off from the tier (rate × time, cumulative).</summary>
    public IReadOnlyDictionary<string, double> FailOpenRu => _failOpen;

    public void AfterEvent(SimWorld world)
    {
        var now = sim.Clock.NowTicks;
        if (now < _nextSample)
            return;
        _nextSample = now - (now % SampleInterval.Ticks) + SampleInterval.Ticks;
        Sample(world, now);
        world.Checks.Leases.SampleEdges(world);
    }

    private void Sample(SimWorld world, long now)
    {
        var degraded = false;
        foreach (var edge in world.Edges)
            if (edge.Up && (edge.Policy.Status.State != PolicyClientState.Connected || world.Network.IsPartitioned(edge.Index)))
                degraded = true;
        _degraded.Add((now, degraded));

        var options = world.Options;
        var lease = options.Policy.LeasePeriod;
        var dt = _lastSample < 0 ? 0 : (now - _lastSample) / (double)TimeSpan.TicksPerSecond;
        _lastSample = now;
        foreach (var tenant in options.Tenants)
        {
            var booked = 0.0;
            var localShares = 0.0;
            foreach (var edge in world.Edges)
            {
                booked += Booked(edge, tenant.Name);
                if (edge.Up && edge.Policy.TryGetAllowance(tenant.Name, out var allowance) && allowance.Source == AllowanceSource.LocalShare)
                    localShares += allowance.RuPerSecond;
            }
            var failOpen = _failOpen.GetValueOrDefault(tenant.Name) + (localShares * dt);
            _failOpen[tenant.Name] = failOpen;
            if (!_series.TryGetValue(tenant.Name, out var series))
                _series[tenant.Name] = series = [];
            series.Add((now, booked, failOpen));
            foreach (var window in Windows)
            {
                var startIndex = LastAtOrBefore(series, now - window.Ticks);
                if (startIndex < 0)
                    continue;
                var (start, bookedThen, failOpenThen) = series[startIndex];
                var spent = booked - bookedThen;
                var seconds = (now - start) / (double)TimeSpan.TicksPerSecond;
                var alive = world.EdgesAliveBetween(start, now);
                var bound = (tenant.BudgetRuPerSecond * seconds) + (tenant.BurstRu * alive / options.Edges) + (tenant.DebtMaxRu * alive);
                if (AnyDegraded(start - lease.Ticks, now))
                {
                    bound += tenant.BudgetRuPerSecond * lease.TotalSeconds;
                    if (!options.StrictPartitionBudget)
                        bound += failOpen - failOpenThen;
                }
                WindowsChecked++;
                var ratio = spent / bound;
                if (ratio > PeakRatio.GetValueOrDefault(tenant.Name))
                    PeakRatio[tenant.Name] = ratio;
                if (spent > bound + 1e-6)
                {
                    sim.Checks.Fail("budget", string.Create(CultureInfo.InvariantCulture,
                        $"tenant {tenant.Name} was admitted {spent:0.#} RU over {seconds:0.#}s (from {SimTrace.Stamp(start).Trim()}), above its bound of {bound:0.#} RU (budget {tenant.BudgetRuPerSecond} RU/s, burst {tenant.BurstRu}, debt {tenant.DebtMaxRu}, {alive} edges)"));
                    return;
                }
            }
        }
    }

    private static double Booked(SimEdge edge, string tenant)
    {
        foreach (var t in edge.Gate.GetTenants())
            if (t.Name == tenant)
            {
                var total = 0.0;
                foreach (var account in t.GetAccounts())
                    total += account.Bucket.TotalBooked;
                return total;
            }
        return 0;
    }

    private bool AnyDegraded(long from, long to)
    {
        for (var i = _degraded.Count - 1; i >= 0; i--)
        {
            var (at, degraded) = _degraded[i];
            if (at < from)
                return false;
            if (degraded && at <= to)
                return true;
        }
        return false;
    }

    private static int LastAtOrBefore(List<(long At, double Booked, double FailOpen)> series, long at)
    {
        int lo = 0, hi = series.Count - 1, found = -1;
        while (lo <= hi)
        {
            var mid = (lo + hi) / 2;
            if (series[mid].At <= at)
            {
                found = mid;
                lo = mid + 1;
            }
            else
            {
                hi = mid - 1;
            }
        }
        return found;
    }
}
