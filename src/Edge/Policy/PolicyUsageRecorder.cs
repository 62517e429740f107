using System.Collections.Concurrent;

namespace MProxy.Edge.Policy;

/// <summary>
/// Accumulates usage between exchanges. Writers (the query path) take a short per-entry lock; the
/// exchange loop drains every entry once per tick.
/// </summary>
internal sealed class PolicyUsageRecorder
{
    private readonly ConcurrentDictionary<string, TenantCounters> _tenants = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<(string Tenant, ulong Fingerprint), FingerprintCounters> _fingerprints = new();
    private readonly ConcurrentDictionary<string, BackendGauge> _backends = new(StringComparer.Ordinal);

    public void Admitted(string tenant, double ru)
    {
        var c = Tenant(tenant);
        lock (c)
        {
            c.UsedRu += Positive(ru);
            c.RequestedRu += Positive(ru);
            c.Admitted++;
        }
    }

    public void Refused(string tenant, double estimatedRu, bool shed)
    {
        var c = Tenant(tenant);
        lock (c)
        {
            c.RequestedRu += Positive(estimatedRu);
            if (shed)
            {
                c.Shed++;
            }
            else
            {
                c.Throttled++;
                c.Constrained = true;
            }
        }
    }

    public void BudgetWait(string tenant)
    {
        var c = Tenant(tenant);
        lock (c)
            c.Constrained = true;
    }

    public void Debt(string tenant, double debtRu)
    {
        var c = Tenant(tenant);
        lock (c)
            c.DebtRu = Positive(debtRu);
    }

    public void Execution(string tenant, ulong fingerprint, double ru, double latencyMs, string? sample)
    {
        var c = _fingerprints.GetOrAdd((tenant, fingerprint), static _ => new FingerprintCounters());
        lock (c)
        {
            c.Count++;
            c.Ru += Positive(ru);
            c.LatencyMs += Positive(latencyMs);
            c.MaxRu = Math.Max(c.MaxRu, Positive(ru));
            c.MaxLatencyMs = Math.Max(c.MaxLatencyMs, Positive(latencyMs));
            c.Sample ??= sample;
        }
    }

    public void Backend(string backend, int wanted, int open)
    {
        var g = _backends.GetOrAdd(backend, static _ => new BackendGauge());
        lock (g)
        {
            g.Wanted = Math.Max(0, wanted);
            g.Open = Math.Max(0, open);
        }
    }

    public List<(string Tenant, TenantCounters Counters)> DrainTenants()
    {
        var list = new List<(string, TenantCounters)>(_tenants.Count);
        foreach (var (tenant, c) in _tenants)
        {
            lock (c)
            {
                list.Add((tenant, c.Copy()));
                c.UsedRu = c.RequestedRu = 0;
                c.Admitted = c.Throttled = c.Shed = 0;
                c.Constrained = false;
            }
        }
        list.Sort((a, b) => string.CompareOrdinal(a.Item1, b.Item1));
        return list;
    }

    public void ForgetTenant(string tenant) => _tenants.TryRemove(tenant, out _);

    public List<(string Tenant, ulong Fingerprint, FingerprintCounters Counters)> DrainFingerprints()
    {
        var list = new List<(string, ulong, FingerprintCounters)>();
        foreach (var (key, c) in _fingerprints)
        {
            if (!_fingerprints.TryRemove(key, out _))
                continue;
            // An execution racing this drain on the removed entry may be lost: telemetry, not budget.
            lock (c)
                list.Add((key.Tenant, key.Fingerprint, c.Copy()));
        }
        list.Sort((a, b) => string.CompareOrdinal(a.Item1, b.Item1) is var t && t != 0 ? t : a.Item2.CompareTo(b.Item2));
        return list;
    }

    public List<(string Backend, int Wanted, int Open)> Backends()
    {
        var list = new List<(string, int, int)>(_backends.Count);
        foreach (var (backend, g) in _backends)
            lock (g)
                list.Add((backend, g.Wanted, g.Open));
        list.Sort((a, b) => string.CompareOrdinal(a.Item1, b.Item1));
        return list;
    }

    private TenantCounters Tenant(string tenant) => _tenants.GetOrAdd(tenant, static _ => new TenantCounters());

    private static double Positive(double value) => double.IsFinite(value) && value > 0 ? value : 0;

    internal sealed class TenantCounters
    {
        public double UsedRu;
        public double RequestedRu;
        public double DebtRu;
        public long Admitted;
        public long Throttled;
        public long Shed;
        public bool Constrained;

        public TenantCounters Copy() => (TenantCounters)MemberwiseClone();
    }

    internal sealed class FingerprintCounters
    {
        public long Count;
        public double Ru;
        public double LatencyMs;
        public double MaxRu;
        public double MaxLatencyMs;
        public string? Sample;

        public FingerprintCounters Copy() => (FingerprintCounters)MemberwiseClone();
    }

    private sealed class BackendGauge
    {
        public int Wanted;
        public int Open;
    }
}
