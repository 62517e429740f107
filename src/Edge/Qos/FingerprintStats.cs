namespace MProxy.Edge.Qos;

/// <summary>
/// Cost of one tenant's fingerprint (or, for the aggregate, of everything not kept individually).
/// <c>ErrorRu</c> bounds the RU the fingerprint may have spent before it was (re)admitted to the table.
/// </summary>
internal readonly record struct FingerprintCost(
    string Tenant,
    ulong Fingerprint,
    long Count,
    double TotalRu,
    double TotalLatencyMs,
    double MaxRu,
    double MaxLatencyMs,
    double ErrorRu);

/// <summary>
/// Per-fingerprint cost statistics (count, total and max RU and latency) with bounded cardinality:
/// about <c>capacity</c> fingerprints are kept individually — the heaviest by RU — and the rest are
/// folded into an aggregate. Telemetry and the policy tier read <see cref="Snapshot"/>.
/// </summary>
/// <remarks>
/// <para>
/// Heavy hitters survive churn the way lossy counting does: each shard keeps up to twice its share;
/// when it reaches that, it keeps the heaviest half (by RU plus error) and folds the rest into the
/// aggregate, and every fingerprint admitted afterwards carries the heaviest evicted total as its
/// <see cref="FingerprintCost.ErrorRu"/> (it may have been evicted with that much), so a heavy
/// fingerprint is never starved out by a stream of new light ones.
/// </para>
/// <para>
/// Thread-safe: striped by hash into shards with one lock each. <see cref="Record"/> does not
/// allocate for a fingerprint already in the table (entries of evicted ones are reused).
/// </para>
/// </remarks>
internal sealed class FingerprintStats
{
    private readonly Shard[] _shards;
    private readonly int _capacity;

    public FingerprintStats(int capacity, int shards = 8)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        shards = Math.Clamp(shards, 1, capacity);
        _capacity = capacity;
        _shards = new Shard[shards];
        var perShard = (capacity + shards - 1) / shards;
        for (var i = 0; i < shards; i++)
            _shards[i] = new Shard(perShard);
    }

    public int Capacity => _capacity;

    public void Record(int tenantId, string tenant, ulong fingerprint, double ru, double latencyMs)
    {
        var key = new VerdictKey(tenantId, fingerprint, false);
        var shard = _shards[(int)((uint)key.GetHashCode() % (uint)_shards.Length)];
        shard.Record(key, tenant, ru, latencyMs);
    }

    /// <summary>The at most <see cref="Capacity"/> heaviest fingerprints (by RU, descending) and the aggregate of all others.</summary>
    public (List<FingerprintCost> Top, FingerprintCost Others) Snapshot()
    {
        var all = new List<FingerprintCost>();
        var others = new Aggregate();
        foreach (var shard in _shards)
            shard.CopyTo(all, ref others);
        all.Sort(static (a, b) => b.TotalRu.CompareTo(a.TotalRu));
        for (var i = _capacity; i < all.Count; i++)
            others.Add(all[i].Count, all[i].TotalRu, all[i].TotalLatencyMs, all[i].MaxRu, all[i].MaxLatencyMs);
        if (all.Count > _capacity)
            all.RemoveRange(_capacity, all.Count - _capacity);
        return (all, new FingerprintCost("*", 0, others.Count, others.TotalRu, others.TotalLatencyMs, others.MaxRu, others.MaxLatencyMs, 0));
    }

    private struct Aggregate
    {
        public long Count;
        public double TotalRu;
        public double TotalLatencyMs;
        public double MaxRu;
        public double MaxLatencyMs;

        public void Add(long count, double ru, double latencyMs, double maxRu, double maxLatencyMs)
        {
            Count += count;
            TotalRu += ru;
            TotalLatencyMs += latencyMs;
            MaxRu = Math.Max(MaxRu, maxRu);
            MaxLatencyMs = Math.Max(MaxLatencyMs, maxLatencyMs);
        }
    }

    private sealed class Entry
    {
        public string Tenant = "";
        public VerdictKey Key;
        public Aggregate Stats;
        public double ErrorRu;

        public double Weight => Stats.TotalRu + ErrorRu;
    }

    private sealed class Shard
    {
        private static readonly IComparer<Entry> HeaviestFirst = Comparer<Entry>.Create(static (a, b) => b.Weight.CompareTo(a.Weight));

        private readonly Lock _lock = new();
        private readonly int _keep;
        private readonly Dictionary<VerdictKey, Entry> _entries;
        private readonly Entry[] _scratch;
        private readonly Stack<Entry> _free = new();
        private Aggregate _others;
        private double _floor;

        public Shard(int keep)
        {
            _keep = keep;
            _entries = new Dictionary<VerdictKey, Entry>(2 * keep);
            _scratch = new Entry[2 * keep];
        }

        public void Record(VerdictKey key, string tenant, double ru, double latencyMs)
        {
            lock (_lock)
            {
                if (!_entries.TryGetValue(key, out var entry))
                {
                    if (_entries.Count >= 2 * _keep)
                        PruneLocked();
                    entry = _free.Count > 0 ? _free.Pop() : new Entry();
                    entry.Key = key;
                    entry.Tenant = tenant;
                    entry.Stats = default;
                    entry.ErrorRu = _floor;
                    _entries.Add(key, entry);
                }
                entry.Stats.Add(1, ru, latencyMs, ru, latencyMs);
            }
        }

        public void CopyTo(List<FingerprintCost> into, ref Aggregate others)
        {
            lock (_lock)
            {
                foreach (var (_, e) in _entries)
                    into.Add(new FingerprintCost(e.Tenant, e.Key.Fingerprint, e.Stats.Count, e.Stats.TotalRu, e.Stats.TotalLatencyMs, e.Stats.MaxRu, e.Stats.MaxLatencyMs, e.ErrorRu));
                others.Add(_others.Count, _others.TotalRu, _others.TotalLatencyMs, _others.MaxRu, _others.MaxLatencyMs);
            }
        }

        private void PruneLocked()
        {
            var n = 0;
            foreach (var (_, e) in _entries)
                _scratch[n++] = e;
            Array.Sort(_scratch, 0, n, HeaviestFirst);
            for (var i = _keep; i < n; i++)
            {
                var e = _scratch[i];
                _others.Add(e.Stats.Count, e.Stats.TotalRu, e.Stats.TotalLatencyMs, e.Stats.MaxRu, e.Stats.MaxLatencyMs);
                _floor = Math.Max(_floor, e.Weight);
                _entries.Remove(e.Key);
                _free.Push(e);
            }
            Array.Clear(_scratch, 0, n);
        }
    }
}
