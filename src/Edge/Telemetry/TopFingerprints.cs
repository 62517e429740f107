using System.Collections.Frozen;
using System.Globalization;
using MProxy.Edge.Qos;

namespace MProxy.Edge.Telemetry;

/// <summary>
/// Which fingerprints have latency series of their own: the <see cref="Capacity"/> heaviest by RU
/// in the QoS fingerprint statistics, refreshed every janitor tick; every other one is labelled
/// <c>tenant="*", fingerprint="other"</c>. The query path reads one frozen map without locking.
/// </summary>
internal sealed class TopFingerprints(int capacity)
{
    public const string OtherTenant = "*";
    public const string OtherFingerprint = "other";

    private volatile FrozenDictionary<(string Tenant, ulong Fingerprint), string> _labels = FrozenDictionary<(string, ulong), string>.Empty;
    private volatile int _capacity = capacity;

    public int Capacity
    {
        get => _capacity;
        set => _capacity = value;
    }

    /// <summary>The labels of a tenant's fingerprint: its own when it is among the top, else the aggregate's.</summary>
    public void Resolve(string tenant, ulong fingerprint, out string tenantLabel, out string fingerprintLabel)
    {
        if (fingerprint != 0 && _labels.TryGetValue((tenant, fingerprint), out var label))
        {
            tenantLabel = tenant;
            fingerprintLabel = label;
            return;
        }
        tenantLabel = OtherTenant;
        fingerprintLabel = OtherFingerprint;
    }

    /// <summary>Whether the fingerprint currently has its own series.</summary>
    public bool Contains(string tenant, ulong fingerprint) => _labels.ContainsKey((tenant, fingerprint));

    /// <summary>Takes the heaviest fingerprints from <paramref name="stats"/> (the previous labels' strings are reused).</summary>
    public void Refresh(FingerprintStats stats)
    {
        var (top, _) = stats.Snapshot();
        var previous = _labels;
        var count = Math.Min(_capacity, top.Count);
        var next = new Dictionary<(string, ulong), string>(count);
        for (var i = 0; i < count; i++)
        {
            var key = (top[i].Tenant, top[i].Fingerprint);
            next[key] = previous.TryGetValue(key, out var label) ? label : Format(top[i].Fingerprint);
        }
        _labels = next.ToFrozenDictionary(KeyComparer.Instance);
    }

    /// <summary>
    /// Hashes the fingerprint alone (already a 64-bit hash of the statement's shape), not the
    /// tenant's name: every request unit looks its labels up, and hashing a string costs more than
    /// the rest of the lookup. Tenants that share a fingerprint share a bucket, told apart by name.
    /// </summary>
    private sealed class KeyComparer : IEqualityComparer<(string Tenant, ulong Fingerprint)>
    {
        public static readonly KeyComparer Instance = new();

        public bool Equals((string Tenant, ulong Fingerprint) x, (string Tenant, ulong Fingerprint) y) =>
            x.Fingerprint == y.Fingerprint && string.Equals(x.Tenant, y.Tenant, StringComparison.Ordinal);

        public int GetHashCode((string Tenant, ulong Fingerprint) key) => (int)key.Fingerprint ^ (int)(key.Fingerprint >> 32);
    }

    /// <summary>A fingerprint as its label and as SHOW FINGERPRINTS prints it: 16 hex digits.</summary>
    public static string Format(ulong fingerprint) => fingerprint.ToString("x16", CultureInfo.InvariantCulture);
}
