using MProxy.Abstractions.Policy;
using MProxy.Grains.Leasing;

namespace MProxy.Grains.Budgets;

/// <summary>
/// The global token bucket of one tenant, leased out to edges. Pure: <c>(state, exchange, now) → (state', reply)</c>.
/// </summary>
/// <remarks>
/// <para>Each lease lets an edge refill a local bucket at <c>rate</c> up to <c>burst</c> until it
/// expires. The grain keeps, per edge, every lease the edge may still be spending (not expired, not
/// superseded by a newer one the edge said it applied) and is committed to the largest. A grant never
/// lets the sum of commitments exceed the budget (rates) or the burst (bursts), so over any window
/// <c>W</c> all edges together spend at most <c>budget·W + burst</c>: at the window's start each edge
/// holds at most its committed burst, and during it refills at most at its committed rate.</para>
/// <para>Sizing: each live edge wants its demand times a headroom (at least a small idle share, and
/// at least the fair share <c>budget / live edges</c> while its budget holds queries back: a throttled
/// edge's demand only measures what it was allowed, so it could not grow out of a small lease);
/// the budget is divided max-min fair, so an edge that wants it always gets at least
/// <c>budget / live edges</c>, and what idle edges leave is lent to busy ones. A returning edge
/// reclaims its share as soon as the borrowers apply their smaller leases (their next exchange),
/// or, if they have gone, when their leases expire.</para>
/// </remarks>
public static class TenantBudgetLogic
{
    public static (TenantBudgetState State, TenantExchangeReply Reply) Exchange(
        TenantBudgetState state, PolicyConfig config, TenantId tenant, TenantExchange exchange, DateTimeOffset now)
    {
        var report = exchange.Report;
        var policy = config.FindTenant(tenant);

        var others = new List<EdgeBudgetEntry>(state.Edges.Count);
        EdgeBudgetEntry? previous = null;
        foreach (var entry in state.Edges)
        {
            if (entry.Edge == exchange.Edge)
            {
                previous = entry;
                continue;
            }
            var pruned = PruneLeases(entry, now, appliedSequence: 0);
            if (IsLive(pruned, config, now) || pruned.Leases.Count > 0)
                others.Add(pruned);
        }

        var me = Report(previous, exchange.Edge, report, now);
        var verdicts = MergeVerdicts(state.Verdicts, exchange.NewVerdicts, now);
        var live = new List<EdgeBudgetEntry>(others.Count + 1);
        foreach (var entry in others)
            if (IsLive(entry, config, now))
                live.Add(entry);
        live.Add(me);
        // Sizing must not depend on who happens to call first: order live edges by id.
        live.Sort((a, b) => a.Edge.CompareTo(b.Edge));
        double debt = 0;
        foreach (var entry in live)
            debt += entry.DebtRu;

        var sequence = state.LastSequence + 1;
        var validUntil = now + config.LeasePeriod;
        TenantLease lease;
        if (policy is null)
        {
            lease = new TenantLease { Tenant = tenant, Sequence = sequence, Unlimited = true, ValidUntil = validUntil, LiveEdges = live.Count, TenantDebtRu = debt };
        }
        else
        {
            var (rate, burst) = Size(policy, config, me, live, others, debt);
            me = me with { Leases = [.. me.Leases, new GrantedLease(sequence, rate, burst, validUntil)] };
            lease = new TenantLease
            {
                Tenant = tenant,
                Sequence = sequence,
                RuPerSecond = rate,
                BurstRu = burst,
                ValidUntil = validUntil,
                BudgetRuPerSecond = policy.RuPerSecond,
                BudgetBurstRu = policy.BurstRu,
                LiveEdges = live.Count,
                TenantDebtRu = debt,
            };
        }

        others.Add(me);
        others.Sort((a, b) => a.Edge.CompareTo(b.Edge));
        var next = state with
        {
            LastSequence = sequence,
            TotalUsedRu = state.TotalUsedRu + Math.Max(0, report.UsedRu),
            Admitted = state.Admitted + Math.Max(0, report.Admitted),
            Throttled = state.Throttled + Math.Max(0, report.Throttled),
            Shed = state.Shed + Math.Max(0, report.Shed),
            Edges = others,
            Verdicts = verdicts,
        };
        return (next, new TenantExchangeReply(lease, verdicts));
    }

    private static (double Rate, double Burst) Size(
        TenantPolicy policy, PolicyConfig config, EdgeBudgetEntry me, List<EdgeBudgetEntry> live, List<EdgeBudgetEntry> others, double debt)
    {
        var budget = Math.Max(0, policy.RuPerSecond);
        if (budget == 0)
            return (0, 0);
        var fair = budget / live.Count;
        var wants = new double[live.Count];
        for (var i = 0; i < live.Count; i++)
            wants[i] = Math.Max(live[i].DemandRuPerSecond * config.DemandHeadroom, live[i].Constrained ? fair : fair * config.IdleShareFraction);
        var targets = FairShare.Allocate(budget, wants);
        var target = targets[live.IndexOf(me)];

        double othersRate = 0, othersBurst = 0;
        foreach (var entry in others)
        {
            var (rate, burst) = Committed(entry);
            othersRate += rate;
            othersBurst += burst;
        }
        var grantedRate = Math.Clamp(Math.Min(target, budget - othersRate), 0, budget);
        // Debt reported by live edges is owed out of the burst: the bigger the debt, the smaller the bursts.
        var burstPool = Math.Max(0, policy.BurstRu - debt);
        var grantedBurst = Math.Clamp(Math.Min(grantedRate / budget * burstPool, policy.BurstRu - othersBurst), 0, Math.Max(0, policy.BurstRu));
        return (grantedRate, grantedBurst);
    }

    /// <summary>The largest rate and burst an edge may be spending under any of its outstanding leases.</summary>
    public static (double RuPerSecond, double BurstRu) Committed(EdgeBudgetEntry entry)
    {
        double rate = 0, burst = 0;
        foreach (var lease in entry.Leases)
        {
            rate = Math.Max(rate, lease.RuPerSecond);
            burst = Math.Max(burst, lease.BurstRu);
        }
        return (rate, burst);
    }

    public static bool IsLive(EdgeBudgetEntry entry, PolicyConfig config, DateTimeOffset now) => now - entry.LastSeen < config.EdgeLiveness;

    private static EdgeBudgetEntry Report(EdgeBudgetEntry? previous, EdgeId edge, TenantUsageReport report, DateTimeOffset now)
    {
        var used = Math.Max(0, report.UsedRu);
        var entry = previous ?? new EdgeBudgetEntry { Edge = edge, FirstSeen = now, LastSeen = now };
        var elapsed = (now - entry.LastSeen).TotalSeconds;
        var spend = previous is null || elapsed <= 0 ? entry.SpendRuPerSecond : used / elapsed;
        entry = PruneLeases(entry, now, report.AppliedLeaseSequence);
        return entry with
        {
            LastSeen = now,
            DemandRuPerSecond = double.IsFinite(report.DemandRuPerSecond) ? Math.Max(0, report.DemandRuPerSecond) : 0,
            DebtRu = double.IsFinite(report.DebtRu) ? Math.Max(0, report.DebtRu) : 0,
            Constrained = report.Constrained,
            SpendRuPerSecond = previous is null ? 0 : (0.5 * entry.SpendRuPerSecond) + (0.5 * spend),
        };
    }

    private static EdgeBudgetEntry PruneLeases(EdgeBudgetEntry entry, DateTimeOffset now, long appliedSequence)
    {
        var keep = 0;
        foreach (var lease in entry.Leases)
            if (lease.ValidUntil > now && lease.Sequence >= appliedSequence)
                keep++;
        if (keep == entry.Leases.Count)
            return entry;
        var leases = new List<GrantedLease>(keep);
        foreach (var lease in entry.Leases)
            if (lease.ValidUntil > now && lease.Sequence >= appliedSequence)
                leases.Add(lease);
        return entry with { Leases = leases };
    }

    private static List<RunawayVerdict> MergeVerdicts(IReadOnlyList<RunawayVerdict> current, IReadOnlyList<RunawayVerdict> updates, DateTimeOffset now)
    {
        var merged = new List<RunawayVerdict>(current.Count + updates.Count);
        foreach (var verdict in current)
            if (verdict.ExpiresAt > now && !Contains(updates, verdict.Fingerprint))
                merged.Add(verdict);
        foreach (var verdict in updates)
            if (verdict.Action != RunawayAction.None && verdict.ExpiresAt > now)
                merged.Add(verdict);
        merged.Sort((a, b) => a.Fingerprint.CompareTo(b.Fingerprint));
        return merged;
    }

    private static bool Contains(IReadOnlyList<RunawayVerdict> verdicts, FingerprintId fingerprint)
    {
        foreach (var verdict in verdicts)
            if (verdict.Fingerprint == fingerprint)
                return true;
        return false;
    }

    public static TenantBudgetView View(TenantBudgetState state, PolicyConfig config, TenantId tenant, DateTimeOffset now)
    {
        var policy = config.FindTenant(tenant);
        var leases = new List<EdgeLeaseView>(state.Edges.Count);
        double committed = 0, spend = 0, demand = 0, debt = 0;
        var live = 0;
        foreach (var entry in state.Edges)
        {
            var isLive = IsLive(entry, config, now);
            GrantedLease? newest = null;
            foreach (var lease in entry.Leases)
                if (lease.ValidUntil > now && (newest is null || lease.Sequence > newest.Sequence))
                    newest = lease;
            var active = entry with { Leases = [.. entry.Leases.Where(l => l.ValidUntil > now)] };
            committed += Committed(active).RuPerSecond;
            if (isLive)
            {
                live++;
                spend += entry.SpendRuPerSecond;
                demand += entry.DemandRuPerSecond;
                debt += entry.DebtRu;
            }
            leases.Add(new EdgeLeaseView(entry.Edge, newest?.Sequence ?? 0, newest?.RuPerSecond ?? 0, newest?.BurstRu ?? 0,
                newest?.ValidUntil ?? entry.LastSeen, entry.DemandRuPerSecond, entry.DebtRu, isLive));
        }
        return new TenantBudgetView
        {
            Tenant = tenant,
            Unlimited = policy is null,
            BudgetRuPerSecond = policy?.RuPerSecond ?? 0,
            BurstRu = policy?.BurstRu ?? 0,
            SpendRuPerSecond = spend,
            DemandRuPerSecond = demand,
            TotalUsedRu = state.TotalUsedRu,
            CommittedRuPerSecond = committed,
            DebtRu = debt,
            Admitted = state.Admitted,
            Throttled = state.Throttled,
            Shed = state.Shed,
            LiveEdges = live,
            Leases = leases,
            Verdicts = [.. state.Verdicts.Where(v => v.ExpiresAt > now)],
        };
    }
}
