using System.Globalization;
using MProxy.Abstractions;
using MProxy.Abstractions.ResourceUnits;
using MProxy.Edge.Configuration;
using YamlDotNet.Core;
using YamlDotNet.Serialization;
using YamlDotNet.Serialization.NamingConventions;

namespace MProxy.Edge.Qos;

/// <summary>
/// Validates the <c>qos:</c> section into a <see cref="QosConfig"/>, reporting the first error as a
/// <see cref="ConfigException"/> with its key path (<c>qos.groups[1].priority</c>).
/// </summary>
internal static class QosConfigValidator
{
    private const string Root = "qos";

    /// <summary>A missing section (null) means QoS is off.</summary>
    public static QosConfig Validate(RawQosConfig? raw)
    {
        if (raw is null)
            return QosConfig.Disabled;

        var weights = ValidateWeights($"{Root}.ruWeights", raw.RuWeights, RuWeights.Default);
        var byDatabase = new Dictionary<string, RuWeights>(StringComparer.Ordinal);
        if (raw.RuWeightsByDatabase is { } perDatabase)
            foreach (var (database, w) in perDatabase)
                byDatabase[database] = ValidateWeights($"{Root}.ruWeightsByDatabase.{database}", w, weights);

        var groups = new List<ResourceGroupConfig>();
        if (raw.Groups is { Count: > 0 } rawGroups)
        {
            for (var i = 0; i < rawGroups.Count; i++)
            {
                var group = ValidateGroup($"{Root}.groups[{i}]", rawGroups[i]);
                if (groups.Exists(g => g.Name == group.Name))
                    throw new ConfigException($"{Root}.groups[{i}].name", $"group '{group.Name}' is defined twice");
                groups.Add(group);
            }
        }
        var defaultGroup = raw.DefaultGroup ?? QosConfig.DefaultGroupName;
        // Without an explicit defaultGroup, tenants nobody configured get an implicit 'default' group.
        if (groups.Count == 0 || (raw.DefaultGroup is null && !groups.Exists(g => g.Name == defaultGroup)))
            groups.Add(new ResourceGroupConfig { Name = Name($"{Root}.defaultGroup", defaultGroup) });
        if (!groups.Exists(g => g.Name == defaultGroup))
            throw new ConfigException($"{Root}.defaultGroup", $"group '{defaultGroup}' is not defined under qos.groups");
        for (var i = 0; i < groups.Count; i++)
        {
            var alternatives = groups[i].Alternatives;
            for (var j = 0; j < alternatives.Count; j++)
            {
                var key = $"{Root}.groups[{i}].alternatives[{j}]";
                if (!groups.Exists(g => g.Name == alternatives[j]))
                    throw new ConfigException(key, $"group '{alternatives[j]}' is not defined");
                if (alternatives[j] == groups[i].Name)
                    throw new ConfigException(key, "a group is not an alternative to itself");
            }
        }

        var tenants = new List<TenantConfig>();
        var matched = new Dictionary<string, string>(StringComparer.Ordinal); // login value → tenant
        for (var i = 0; i < (raw.Tenants?.Count ?? 0); i++)
        {
            var key = $"{Root}.tenants[{i}]";
            var t = raw.Tenants![i];
            var name = Required($"{key}.name", t.Name);
            if (tenants.Exists(x => x.Name == name))
                throw new ConfigException($"{key}.name", $"tenant '{name}' is defined twice");
            var group = Required($"{key}.group", t.Group);
            if (!groups.Exists(g => g.Name == group))
                throw new ConfigException($"{key}.group", $"group '{group}' is not defined");
            var allowed = t.AllowedGroups ?? [];
            for (var j = 0; j < allowed.Count; j++)
                if (!groups.Exists(g => g.Name == allowed[j]))
                    throw new ConfigException($"{key}.allowedGroups[{j}]", $"group '{allowed[j]}' is not defined");
            var match = t.Match ?? [];
            for (var j = 0; j < match.Count; j++)
                if (!matched.TryAdd(Required($"{key}.match[{j}]", match[j]), name))
                    throw new ConfigException($"{key}.match[{j}]", $"'{match[j]}' already maps to tenant '{matched[match[j]]}'");
            tenants.Add(new TenantConfig { Name = name, Group = group, Match = [.. match], AllowedGroups = [.. allowed] });
        }
        foreach (var tenant in tenants)
            if (matched.TryGetValue(tenant.Name, out var other) && other != tenant.Name)
                throw new ConfigException($"{Root}.tenants", $"'{tenant.Name}' is both a tenant and a match of tenant '{other}'");

        var hintPolicy = (raw.HintPolicy ?? HintPolicyNames.Narrowing).ToLowerInvariant();
        if (hintPolicy is not (HintPolicyNames.Narrowing or HintPolicyNames.Ignore))
            throw new ConfigException($"{Root}.hintPolicy", $"'{raw.HintPolicy}' is not one of {HintPolicyNames.Narrowing}, {HintPolicyNames.Ignore}");

        return new QosConfig
        {
            Enabled = raw.Enabled ?? true,
            TenantFrom = (raw.TenantFrom ?? "user").ToLowerInvariant() switch
            {
                "user" => TenantKeySource.User,
                "database" => TenantKeySource.Database,
                "application_name" => TenantKeySource.ApplicationName,
                "user_database" => TenantKeySource.UserAndDatabase,
                _ => throw new ConfigException($"{Root}.tenantFrom", $"'{raw.TenantFrom}' is not one of user, database, application_name, user_database"),
            },
            DefaultGroup = defaultGroup,
            MaxTenants = Range($"{Root}.maxTenants", raw.MaxTenants ?? 10_000, 1, 10_000_000),
            HintPolicy = hintPolicy,
            Weights = weights,
            WeightsByDatabase = byDatabase,
            CoDel = ValidateCoDel($"{Root}.codel", raw.Codel),
            Groups = groups,
            Tenants = tenants,
            Runaway = ValidateRunaway($"{Root}.runaway", raw.Runaway),
        };
    }

    /// <summary>Parses and validates the body of a <c>qos:</c> section on its own (tools and tests).</summary>
    public static QosConfig LoadYaml(string yaml)
    {
        var deserializer = new DeserializerBuilder().WithNamingConvention(CamelCaseNamingConvention.Instance).Build();
        RawQosConfig? raw;
        try
        {
            raw = deserializer.Deserialize<RawQosConfig?>(yaml);
        }
        catch (YamlException e)
        {
            throw new ConfigException($"{Root}:{e.Start.Line}:{e.Start.Column}", e.InnerException?.Message ?? e.Message);
        }
        return Validate(raw ?? new RawQosConfig());
    }

    private static ResourceGroupConfig ValidateGroup(string key, RawResourceGroup g)
    {
        var name = Name($"{key}.name", g.Name);
        var rate = Positive($"{key}.ruPerSecond", g.RuPerSecond ?? 1000, allowZero: true);
        var burst = Positive($"{key}.burst", g.Burst ?? Math.Max(rate, 10), allowZero: true);
        var debt = Positive($"{key}.debtMax", g.DebtMax ?? burst, allowZero: true);
        var settings = new List<KeyValuePair<string, string>>();
        if (g.ServerSettings is { } server)
        {
            foreach (var (setting, value) in server)
            {
                if (!IsSettingName(setting))
                    throw new ConfigException($"{key}.serverSettings.{setting}", "is not a setting name (letters, digits, '_' and '.')");
                if (value is null || value.Length > 256 || value.AsSpan().IndexOfAny("';\\\0\r\n") >= 0)
                    throw new ConfigException($"{key}.serverSettings.{setting}", "must be a value of at most 256 characters without quotes, backslashes, ';' or line breaks");
                settings.Add(new(setting, value));
            }
        }
        var alternatives = g.Alternatives ?? [];
        for (var i = 0; i < alternatives.Count; i++)
            for (var j = 0; j < i; j++)
                if (alternatives[i] == alternatives[j])
                    throw new ConfigException($"{key}.alternatives[{i}]", $"'{alternatives[i]}' is listed twice");
        var maxConcurrent = Range($"{key}.maxConcurrent", g.MaxConcurrent ?? 0, 0, 1_000_000);
        return new ResourceGroupConfig
        {
            Name = name,
            RuPerSecond = rate,
            Burst = burst,
            DebtMax = debt,
            Priority = g.Priority is null ? Priority.Medium : ParsePriority($"{key}.priority", g.Priority),
            Weight = g.Weight is { } weight ? Positive($"{key}.weight", weight, allowZero: false, max: 1_000_000) : 1,
            MaxConcurrent = maxConcurrent == 0 ? int.MaxValue : maxConcurrent,
            StatementTimeout = Ms($"{key}.statementTimeoutMs", g.StatementTimeoutMs ?? 0, 0),
            QueueTimeout = Ms($"{key}.queueTimeoutMs", g.QueueTimeoutMs ?? 0, 0),
            MaxBudgetWait = Ms($"{key}.maxBudgetWaitMs", g.MaxBudgetWaitMs ?? 100, 0),
            ServerSettings = settings,
            Alternatives = [.. alternatives],
        };
    }

    private static RuWeights ValidateWeights(string key, RawRuWeights? w, RuWeights defaults)
    {
        if (w is null)
            return defaults;
        var weights = defaults with
        {
            ReadBase = w.ReadBase ?? defaults.ReadBase,
            WriteBase = w.WriteBase ?? defaults.WriteBase,
            ReadPerByte = w.ReadPerByte ?? defaults.ReadPerByte,
            WritePer4KiB = w.WritePer4KiB ?? defaults.WritePer4KiB,
            LatencyPerMs = w.LatencyPerMs ?? defaults.LatencyPerMs,
        };
        if (weights.FirstInvalid() is { } invalid)
            throw new ConfigException($"{key}.{char.ToLowerInvariant(invalid[0])}{invalid[1..]}", "must be a finite number ≥ 0");
        return weights;
    }

    private static CoDelSettings ValidateCoDel(string key, RawCoDel? c)
    {
        if (c is null)
            return new CoDelSettings();
        var target = Ms($"{key}.targetMs", c.TargetMs ?? 5, 1);
        var interval = Ms($"{key}.intervalMs", c.IntervalMs ?? 100, 1);
        if (interval < target)
            throw new ConfigException($"{key}.intervalMs", $"{interval.TotalMilliseconds} ms is shorter than the target ({target.TotalMilliseconds} ms)");
        return new CoDelSettings { Enabled = c.Enabled ?? true, Target = target, Interval = interval };
    }

    private static RunawayConfig ValidateRunaway(string key, RawRunaway? r)
    {
        if (r is null)
            return new RunawayConfig();
        var rules = new List<RunawayRuleConfig>();
        var raws = r.Rules ?? [];
        if (raws.Count > RunawayConfig.MaxRules)
            throw new ConfigException($"{key}.rules", $"{raws.Count} rules; at most {RunawayConfig.MaxRules} are supported");
        for (var i = 0; i < raws.Count; i++)
        {
            var rule = ValidateRule($"{key}.rules[{i}]", raws[i]);
            if (rules.Exists(x => x.Name == rule.Name))
                throw new ConfigException($"{key}.rules[{i}].name", $"rule '{rule.Name}' is defined twice");
            rules.Add(rule);
        }
        return new RunawayConfig
        {
            Rules = rules,
            MaxVerdicts = Range($"{key}.maxVerdicts", r.MaxVerdicts ?? 10_000, 1, 10_000_000),
            FingerprintStatsSize = Range($"{key}.fingerprintStatsSize", r.FingerprintStatsSize ?? 1000, 1, 1_000_000),
        };
    }

    private static RunawayRuleConfig ValidateRule(string key, RawRunawayRule r)
    {
        var name = Name($"{key}.name", r.Name);
        var maxRu = Positive($"{key}.maxRuPerExecution", r.MaxRuPerExecution ?? 0, allowZero: true);
        var maxElapsed = Ms($"{key}.maxElapsedMs", r.MaxElapsedMs ?? 0, 0);
        if (maxRu == 0 && maxElapsed == TimeSpan.Zero)
            throw new ConfigException(key, $"rule '{name}' needs maxRuPerExecution or maxElapsedMs");
        var action = (r.Action ?? "dry_run").ToLowerInvariant() switch
        {
            "dry_run" or "dryrun" => RunawayAction.DryRun,
            "deprioritize" => RunawayAction.Deprioritize,
            "throttle" => RunawayAction.Throttle,
            "cancel" => RunawayAction.Cancel,
            _ => throw new ConfigException($"{key}.action", $"'{r.Action}' is not one of dry_run, deprioritize, throttle, cancel"),
        };
        var maxConcurrent = Range($"{key}.maxConcurrent", r.MaxConcurrent ?? 0, 0, 1_000_000);
        var ruPerSecond = Positive($"{key}.ruPerSecond", r.RuPerSecond ?? 0, allowZero: true);
        if (action == RunawayAction.Throttle && maxConcurrent == 0 && ruPerSecond == 0)
            throw new ConfigException(key, $"rule '{name}' throttles: set maxConcurrent and/or ruPerSecond");
        ulong? fingerprint = null;
        if (r.Fingerprint is { } text)
        {
            var hex = text.StartsWith("0x", StringComparison.OrdinalIgnoreCase);
            if (!ulong.TryParse(hex ? text.AsSpan(2) : text, hex ? NumberStyles.AllowHexSpecifier : NumberStyles.None, CultureInfo.InvariantCulture, out var value))
                throw new ConfigException($"{key}.fingerprint", $"'{text}' is not a 64-bit fingerprint (decimal or 0x-prefixed hex)");
            fingerprint = value;
        }
        return new RunawayRuleConfig
        {
            Name = name,
            Tenant = r.Tenant,
            Fingerprint = fingerprint,
            MaxRuPerExecution = maxRu,
            MaxElapsed = maxElapsed,
            Action = action,
            Scope = (r.Scope ?? "fingerprint").ToLowerInvariant() switch
            {
                "fingerprint" => RunawayScope.Fingerprint,
                "tenant" => RunawayScope.Tenant,
                _ => throw new ConfigException($"{key}.scope", $"'{r.Scope}' is not one of fingerprint, tenant"),
            },
            Watch = Ms($"{key}.watchMs", r.WatchMs ?? 600_000, 0),
            Shadow = r.Shadow ?? false,
            DeprioritizeTo = r.Priority is null ? Priority.Low : ParsePriority($"{key}.priority", r.Priority),
            ThrottleMaxConcurrent = maxConcurrent,
            ThrottleRuPerSecond = ruPerSecond,
        };
    }

    private static Priority ParsePriority(string key, string text) => text.ToLowerInvariant() switch
    {
        "high" => Priority.High,
        "medium" => Priority.Medium,
        "low" => Priority.Low,
        _ => throw new ConfigException(key, $"'{text}' is not one of high, medium, low"),
    };

    private static string Required(string key, string? value) =>
        string.IsNullOrWhiteSpace(value) ? throw new ConfigException(key, "is required") : value;

    /// <summary>Group and rule names appear in hints and messages: letters, digits, '_', '-', '.'.</summary>
    private static string Name(string key, string? value)
    {
        var name = Required(key, value);
        if (name.Length > 64)
            throw new ConfigException(key, "is longer than 64 characters");
        foreach (var c in name)
            if (!(char.IsAsciiLetterOrDigit(c) || c is '_' or '-' or '.'))
                throw new ConfigException(key, $"'{name}' may hold only letters, digits, '_', '-' and '.'");
        return name;
    }

    private static bool IsSettingName(string name)
    {
        if (name.Length is 0 or > 64 || !(char.IsAsciiLetter(name[0]) || name[0] == '_'))
            return false;
        foreach (var c in name)
            if (!(char.IsAsciiLetterOrDigit(c) || c is '_' or '.'))
                return false;
        return true;
    }

    private static double Positive(string key, double value, bool allowZero, double max = 1e12)
    {
        if (!double.IsFinite(value) || value < 0 || (!allowZero && value == 0) || value > max)
            throw new ConfigException(key, $"{value.ToString(CultureInfo.InvariantCulture)} is not a number in {(allowZero ? "[0" : "(0")}, {max.ToString(CultureInfo.InvariantCulture)}]");
        return value;
    }

    private static int Range(string key, int value, int min, int max) =>
        value < min || value > max ? throw new ConfigException(key, $"{value} is outside {min}..{max}") : value;

    private static TimeSpan Ms(string key, int value, int min) =>
        value < min ? throw new ConfigException(key, $"{value} ms is below the minimum of {min} ms") : TimeSpan.FromMilliseconds(value);
}
