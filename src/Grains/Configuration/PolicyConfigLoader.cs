using System.Text;
using MProxy.Abstractions.Policy;
using YamlDotNet.Core;
using YamlDotNet.Serialization;
using YamlDotNet.Serialization.NamingConventions;

namespace MProxy.Grains.Configuration;

/// <summary>
/// Reads a policy file (YAML or JSON) into a validated <see cref="PolicyConfig"/>. The version is the
/// file's <c>version</c> key, or else derived from its content, so every silo reading the same file
/// announces the same version.
/// </summary>
public static class PolicyConfigLoader
{
    public static PolicyConfig LoadFile(string path)
    {
        if (!File.Exists(path))
            throw new PolicyConfigException("--policy", $"file '{path}' does not exist");
        return Load(File.ReadAllText(path), path);
    }

    public static PolicyConfig Load(string text, string source = "policy")
    {
        RawPolicy raw;
        try
        {
            raw = new DeserializerBuilder()
                .WithNamingConvention(CamelCaseNamingConvention.Instance)
                .Build()
                .Deserialize<RawPolicy?>(text) ?? new RawPolicy();
        }
        catch (YamlException e)
        {
            throw new PolicyConfigException($"{source}:{e.Start.Line}:{e.Start.Column}", e.InnerException?.Message ?? e.Message);
        }
        return Validate(raw, raw.Version ?? ContentVersion(text));
    }

    /// <summary>A positive version derived from the text (FNV-1a, 53 bits so JavaScript shows it exactly).</summary>
    public static long ContentVersion(string text)
    {
        var hash = 14695981039346656037UL;
        foreach (var b in Encoding.UTF8.GetBytes(text))
        {
            hash ^= b;
            hash *= 1099511628211UL;
        }
        return (long)(hash & ((1UL << 53) - 1)) | 1;
    }

    private static PolicyConfig Validate(RawPolicy raw, long version)
    {
        if (version <= 0)
            throw new PolicyConfigException("version", $"{version} must be positive");
        var defaults = new PolicyConfig();
        var exchange = Ms("exchangeIntervalMs", raw.ExchangeIntervalMs, defaults.ExchangeInterval, 100);
        var lease = Ms("leasePeriodMs", raw.LeasePeriodMs, defaults.LeasePeriod, 100);
        if (lease < exchange)
            throw new PolicyConfigException("leasePeriodMs", "must be at least exchangeIntervalMs, or leases lapse between exchanges");
        var tenants = new List<TenantPolicy>();
        for (var i = 0; i < (raw.Tenants?.Count ?? 0); i++)
        {
            var tenant = Tenant($"tenants[{i}]", raw.Tenants![i], requireName: true);
            if (tenants.Exists(t => t.Tenant == tenant.Tenant))
                throw new PolicyConfigException($"tenants[{i}].name", $"tenant '{tenant.Tenant}' is defined twice");
            tenants.Add(tenant);
        }
        var backends = new List<BackendPolicy>();
        for (var i = 0; i < (raw.Backends?.Count ?? 0); i++)
        {
            var b = raw.Backends![i];
            if (string.IsNullOrWhiteSpace(b.Name))
                throw new PolicyConfigException($"backends[{i}].name", "is required");
            if (b.MaxConnections is not { } max || max < 1)
                throw new PolicyConfigException($"backends[{i}].maxConnections", "is required and must be at least 1");
            if (backends.Exists(x => x.Backend.Value == b.Name))
                throw new PolicyConfigException($"backends[{i}].name", $"backend '{b.Name}' is defined twice");
            backends.Add(new BackendPolicy(new BackendId(b.Name), max));
        }
        return new PolicyConfig
        {
            Version = version,
            LeasePeriod = lease,
            ExchangeInterval = exchange,
            EdgeLiveness = Ms("edgeLivenessMs", raw.EdgeLivenessMs, defaults.EdgeLiveness, 100),
            DemandHeadroom = Number("demandHeadroom", raw.DemandHeadroom ?? defaults.DemandHeadroom, 1, 100),
            IdleShareFraction = Number("idleShareFraction", raw.IdleShareFraction ?? defaults.IdleShareFraction, 0, 1),
            DefaultTenant = raw.DefaultTenant is null ? null : Tenant("defaultTenant", raw.DefaultTenant, requireName: false),
            Tenants = tenants,
            Backends = backends,
            Runaway = Runaway(raw.Runaway),
        };
    }

    private static TenantPolicy Tenant(string key, RawTenant t, bool requireName)
    {
        if (requireName && string.IsNullOrWhiteSpace(t.Name))
            throw new PolicyConfigException($"{key}.name", "is required");
        if (t.RuPerSecond is not { } rate)
            throw new PolicyConfigException($"{key}.ruPerSecond", "is required");
        Number($"{key}.ruPerSecond", rate, 0, 1e12);
        var burst = Number($"{key}.burstRu", t.BurstRu ?? rate, 0, 1e12);
        return new TenantPolicy(new TenantId(t.Name ?? "*"), rate, burst);
    }

    private static RunawayPolicy Runaway(RawRunaway? r)
    {
        var defaults = new RunawayPolicy();
        if (r is null)
            return defaults;
        return new RunawayPolicy
        {
            MinExecutions = Number("runaway.minExecutions", r.MinExecutions ?? defaults.MinExecutions, 0, 1e9),
            HalfLife = Ms("runaway.halfLifeMs", r.HalfLifeMs, defaults.HalfLife, 1000),
            VerdictTtl = Ms("runaway.verdictTtlMs", r.VerdictTtlMs, defaults.VerdictTtl, 1000),
            ThrottleRuPerSecond = Number("runaway.throttleRuPerSecond", r.ThrottleRuPerSecond ?? defaults.ThrottleRuPerSecond, 0, 1e12),
            Deprioritize = Threshold("runaway.deprioritize", r.Deprioritize),
            Throttle = Threshold("runaway.throttle", r.Throttle),
            Reject = Threshold("runaway.reject", r.Reject),
        };
    }

    private static RunawayThreshold? Threshold(string key, RawThreshold? t)
    {
        if (t is null)
            return null;
        if (t.RuPerExecution is null && t.LatencyMs is null)
            throw new PolicyConfigException(key, "needs ruPerExecution or latencyMs");
        if (t.RuPerExecution is { } ru)
            Number($"{key}.ruPerExecution", ru, 0, 1e12);
        if (t.LatencyMs is { } ms)
            Number($"{key}.latencyMs", ms, 0, 1e9);
        return new RunawayThreshold(t.RuPerExecution, t.LatencyMs);
    }

    private static double Number(string key, double value, double min, double max) =>
        double.IsFinite(value) && value >= min && value <= max ? value : throw new PolicyConfigException(key, $"{value} is outside {min}..{max}");

    private static TimeSpan Ms(string key, int? value, TimeSpan fallback, int min) =>
        value is null ? fallback
        : value < min ? throw new PolicyConfigException(key, $"{value} ms is below the minimum of {min} ms")
        : TimeSpan.FromMilliseconds(value.Value);
}
