using MProxy.Edge.Configuration;
using MProxy.Edge.Routing;
using YamlDotNet.Core;
using YamlDotNet.Serialization;
using YamlDotNet.Serialization.NamingConventions;

namespace MProxy.Edge.Backends;

/// <summary>What a database's own keys supply to its <c>backends:</c> section when the section leaves them out.</summary>
/// <param name="Primary">The database-level <c>primary:</c>, if any.</param>
/// <param name="Monitor">The login the monitor falls back to (typically the database's server user).</param>
/// <param name="DatabaseName">The database's name: the default seed is derived from it.</param>
/// <param name="Port">The port of a host given without one: 5432 for PostgreSQL, 3306 for MySQL.</param>
/// <param name="MonitorDatabase">The database a <c>monitor:</c> without one logs in to: <c>postgres</c>, or none (empty) for MySQL.</param>
public sealed record BackendsDefaults(HostPort? Primary, MonitorCredentials? Monitor, string DatabaseName, int Port = BackendsConfigValidator.DefaultPort, string MonitorDatabase = "postgres");

/// <summary>Validates a <c>backends:</c> section into a <see cref="BackendsConfig"/>; every error names its key path.</summary>
public static class BackendsConfigValidator
{
    public const int DefaultPort = 5432;

    /// <summary>
    /// Validates <paramref name="raw"/> (null: the section is absent, so the database-level primary
    /// is the only host). <paramref name="key"/> is the section's path, e.g. <c>databases[0].backends</c>.
    /// </summary>
    /// <exception cref="ConfigException">a value is missing, malformed or out of range.</exception>
    internal static BackendsConfig Validate(string key, RawBackends? raw, BackendsDefaults defaults)
    {
        raw ??= new RawBackends();
        var (mode, hosts) = ValidateHosts(key, raw, defaults.Primary, defaults.Port);

        var monitorUser = raw.Monitor?.User ?? defaults.Monitor?.User;
        MonitorCredentials? monitor = null;
        if (!string.IsNullOrWhiteSpace(monitorUser))
        {
            monitor = new MonitorCredentials(
                monitorUser,
                raw.Monitor?.Password ?? (raw.Monitor?.User is null ? defaults.Monitor?.Password : null),
                raw.Monitor?.Database ?? defaults.Monitor?.Database ?? defaults.MonitorDatabase);
        }
        else if (hosts.Count > 1 || raw.Monitor is not null)
        {
            throw new ConfigException($"{key}.monitor.user", "is required: the login the edge uses to check the health of each host");
        }

        var interval = Ms($"{key}.healthCheck.intervalMs", raw.HealthCheck?.IntervalMs ?? 1000, 50, 600_000);
        var timeout = Ms($"{key}.healthCheck.timeoutMs", raw.HealthCheck?.TimeoutMs ?? (int)Math.Min(1000, interval.TotalMilliseconds), 10, 600_000);

        var breakerDefaults = new BreakerSettings();
        var failuresToOpen = raw.Breaker?.FailuresToOpen ?? breakerDefaults.FailuresToOpen;
        if (failuresToOpen is < 1 or > 1000)
            throw new ConfigException($"{key}.breaker.failuresToOpen", $"{failuresToOpen} is outside 1..1000");
        var cooldown = Ms($"{key}.breaker.cooldownMs", raw.Breaker?.CooldownMs ?? (int)breakerDefaults.CooldownBase.TotalMilliseconds, 1, 3_600_000);
        var cooldownMax = Ms($"{key}.breaker.cooldownMaxMs", raw.Breaker?.CooldownMaxMs ?? (int)Math.Max(cooldown.TotalMilliseconds, breakerDefaults.CooldownMax.TotalMilliseconds), 1, 3_600_000);
        if (cooldownMax < cooldown)
            throw new ConfigException($"{key}.breaker.cooldownMaxMs", $"{cooldownMax.TotalMilliseconds:0} ms is below breaker.cooldownMs ({cooldown.TotalMilliseconds:0} ms)");
        var jitter = raw.Breaker?.Jitter ?? breakerDefaults.Jitter;
        if (!(jitter >= 0 && jitter < 1))
            throw new ConfigException($"{key}.breaker.jitter", $"{jitter} is outside [0, 1)");

        var maxLagBytes = raw.MaxReplicaLagBytes;
        if (maxLagBytes < 0)
            throw new ConfigException($"{key}.maxReplicaLagBytes", $"{maxLagBytes} is negative (0 means no byte bound)");
        var maxLagMs = raw.MaxReplicaLagMs ?? 1000;
        if (maxLagMs < 0)
            throw new ConfigException($"{key}.maxReplicaLagMs", $"{maxLagMs} is negative (0 means no time bound)");

        var stickiness = Ms($"{key}.stickinessMs", raw.StickinessMs ?? 0, 0, 3_600_000);
        var failoverWait = Ms($"{key}.failoverWaitMs", raw.FailoverWaitMs ?? 10_000, 0, 300_000);
        var latencyDecay = Ms($"{key}.latencyDecayMs", raw.LatencyDecayMs ?? 10_000, 100, 3_600_000);

        return new BackendsConfig
        {
            Mode = mode,
            Hosts = hosts,
            Monitor = monitor,
            HealthCheckInterval = interval,
            HealthCheckTimeout = timeout,
            Breaker = new BreakerSettings { FailuresToOpen = failuresToOpen, CooldownBase = cooldown, CooldownMax = cooldownMax, Jitter = jitter },
            MaxReplicaLagBytes = maxLagBytes is null or 0 ? null : maxLagBytes,
            MaxReplicaLag = maxLagMs == 0 ? null : TimeSpan.FromMilliseconds(maxLagMs),
            PrimaryServesReads = raw.PrimaryServesReads ?? true,
            ReadYourWrites = raw.ReadYourWrites ?? hosts.Count > 1,
            StickinessWindow = stickiness,
            Rules = ValidateWriteFunctions(key, raw),
            FailoverWait = failoverWait,
            LatencyDecay = latencyDecay,
            Seed = raw.Seed,
        };
    }

    /// <summary>Parses and validates a <c>backends:</c> section given as YAML on its own (tests, tools).</summary>
    /// <exception cref="ConfigException">the YAML is malformed, has unknown keys, or fails validation.</exception>
    public static BackendsConfig ParseYaml(string yaml, string key, BackendsDefaults defaults)
    {
        var deserializer = new DeserializerBuilder().WithNamingConvention(CamelCaseNamingConvention.Instance).Build();
        RawBackends? raw;
        try
        {
            raw = deserializer.Deserialize<RawBackends?>(yaml);
        }
        catch (YamlException e)
        {
            throw new ConfigException($"{key}:{e.Start.Line}:{e.Start.Column}", e.InnerException?.Message ?? e.Message);
        }
        return Validate(key, raw, defaults);
    }

    private static (TopologyMode, IReadOnlyList<HostPort>) ValidateHosts(string key, RawBackends raw, HostPort? databasePrimary, int port)
    {
        var hosts = new List<HostPort>();
        if (raw.Hosts is not null)
        {
            if (raw.Primary is not null || raw.Replicas is not null)
                throw new ConfigException($"{key}.hosts", "use either 'hosts' (primary discovered) or 'primary' with 'replicas', not both");
            if (raw.Hosts.Count == 0)
                throw new ConfigException($"{key}.hosts", "is empty: list every host of the database as host:port");
            for (var i = 0; i < raw.Hosts.Count; i++)
                AddHost(hosts, $"{key}.hosts[{i}]", raw.Hosts[i], port);
            return (TopologyMode.Discover, hosts);
        }

        HostPort primary;
        if (raw.Primary is not null)
        {
            primary = Parse($"{key}.primary", raw.Primary, port);
            if (databasePrimary is { } other && other != primary)
                throw new ConfigException($"{key}.primary", $"{primary} differs from the database's primary {other}: give it once");
        }
        else
        {
            primary = databasePrimary ?? throw new ConfigException($"{key}.primary", "is required (host:port), or list every host under 'hosts'");
        }
        hosts.Add(primary);
        for (var i = 0; i < (raw.Replicas?.Count ?? 0); i++)
            AddHost(hosts, $"{key}.replicas[{i}]", raw.Replicas![i], port);
        return (TopologyMode.Static, hosts);
    }

    private static void AddHost(List<HostPort> hosts, string key, string? text, int port)
    {
        if (string.IsNullOrWhiteSpace(text))
            throw new ConfigException(key, "is empty (expected host:port)");
        var host = Parse(key, text, port);
        if (hosts.Contains(host))
            throw new ConfigException(key, $"{host} is listed twice");
        hosts.Add(host);
    }

    private static HostPort Parse(string key, string text, int port)
    {
        var host = ConfigLoader.ParseHostPort(key, text, port);
        if (host.Host.Length == 0)
            throw new ConfigException(key, $"'{text}' has no host");
        if (host.Port == 0)
            throw new ConfigException(key, $"'{text}' has port 0");
        return host;
    }

    private static RoutingRules ValidateWriteFunctions(string key, RawBackends raw)
    {
        if (raw.WriteFunctions is null && raw.ExtraWriteFunctions is null)
            return RoutingRules.Default;
        var names = new List<string>(raw.WriteFunctions ?? RoutingRules.DefaultWriteFunctions);
        CheckNames(raw.WriteFunctions, $"{key}.writeFunctions");
        CheckNames(raw.ExtraWriteFunctions, $"{key}.extraWriteFunctions");
        foreach (var extra in raw.ExtraWriteFunctions ?? [])
            if (!names.Contains(extra, StringComparer.OrdinalIgnoreCase))
                names.Add(extra);
        return new RoutingRules { WriteFunctions = names };
    }

    private static void CheckNames(List<string>? names, string key)
    {
        for (var i = 0; i < (names?.Count ?? 0); i++)
        {
            try
            {
                _ = new RoutingRules { WriteFunctions = [names![i]] };
            }
            catch (ArgumentException)
            {
                throw new ConfigException($"{key}[{i}]", $"'{names![i]}' is not a function name ([schema.]identifier)");
            }
        }
    }

    private static TimeSpan Ms(string key, int value, int min, int max) =>
        value < min || value > max ? throw new ConfigException(key, $"{value} ms is outside {min}..{max} ms") : TimeSpan.FromMilliseconds(value);
}
