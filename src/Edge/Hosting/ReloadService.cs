using System.Diagnostics.Metrics;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using MProxy.Abstractions.Policy;
using MProxy.Edge.Configuration;
using MProxy.Edge.Protocols.Postgres;
using MProxy.Edge.Qos;
using MProxy.Edge.Telemetry;
using MProxy.Grains.Configuration;
using MProxy.Grains.Exchange;

namespace MProxy.Edge.Hosting;

/// <summary>How the edge was configured: the command line it can read the file again with (null: no file).</summary>
internal sealed record ReloadSource(CommandLineOverrides? Overrides)
{
    public string? ConfigFile => Overrides?.ConfigFile;
}

/// <summary>What a reload did: applied (with settings kept until restart), or refused at a key.</summary>
internal sealed record ReloadOutcome(bool Applied, long Generation, string? Key, string Message, IReadOnlyList<string> KeptUntilRestart);

/// <summary>
/// Reloads the configuration file without a restart (file change, SIGHUP, the admin console's
/// RELOAD): builds a new snapshot with the same command-line overrides, and on any error keeps the
/// snapshot in force and reports the offending key. A valid snapshot is swapped in whole
/// (<see cref="ConfigStore.Swap"/>); the QoS gate (tenants, groups, budgets, CoDel, runaway rules),
/// the pools (sizes and timeouts; removed databases close), the embedded policy tier (budgets) and
/// telemetry take it. Queries in flight finish on the snapshot they started with, and connected
/// clients stay connected. Settings bound at start — listen addresses, the policy tier's address,
/// a database's hosts, OTLP export, turning QoS on or off — keep their value (logged) or, for QoS,
/// refuse the reload.
/// </summary>
internal sealed class ConfigReloader
{
    private readonly Lock _lock = new();
    private readonly ReloadSource _source;
    private readonly ConfigStore _store;
    private readonly PgPoolRegistry _pools;
    private readonly MProxy.Edge.Protocols.MySql.MySqlPoolRegistry? _mysqlPools;
    private readonly QosGate? _qos;
    private readonly IPolicyTier? _tier;
    private readonly EdgeTelemetry? _telemetry;
    private readonly ILogger _log;
    private long _generation = 1;
    private long _applied;
    private long _failed;
    private int _lastSucceeded = 1;

    public ConfigReloader(ReloadSource source, ConfigStore store, PgPoolRegistry pools, ILogger<ConfigReloader> log,
        QosGate? qos = null, IPolicyTier? tier = null, EdgeTelemetry? telemetry = null, MProxy.Edge.Protocols.MySql.MySqlPoolRegistry? mysqlPools = null)
    {
        _mysqlPools = mysqlPools;
        _source = source;
        _store = store;
        _pools = pools;
        _qos = qos;
        _tier = tier;
        _telemetry = telemetry;
        _log = log;
        if (telemetry is not null)
        {
            telemetry.Meter.CreateObservableCounter("mproxy.config.reloads", () => new[]
            {
                new Measurement<long>(Volatile.Read(ref _applied), new KeyValuePair<string, object?>("result", "applied")),
                new Measurement<long>(Volatile.Read(ref _failed), new KeyValuePair<string, object?>("result", "failed")),
            }, "{reload}", "Configuration reloads, by result (applied, or failed and the old configuration kept).");
            telemetry.Meter.CreateObservableGauge("mproxy.config.generation", () => Generation, description: "The configuration snapshot in force: 1 at start, +1 per applied reload.");
            telemetry.Meter.CreateObservableGauge("mproxy.config.last_reload_success", () => Volatile.Read(ref _lastSucceeded), description: "1 when the last reload was applied (or none was tried), 0 when it failed.");
        }
    }

    /// <summary>The file reloads read, or null when the edge was configured on the command line only.</summary>
    public string? ConfigFile => _source.ConfigFile;

    public long Generation => Interlocked.Read(ref _generation);

    public ReloadOutcome Reload(string trigger)
    {
        lock (_lock)
        {
            if (_source.Overrides is not { ConfigFile: not null } overrides)
                return Fail(trigger, "--config", "the edge was started without a configuration file: there is nothing to reload");
            EdgeConfig next;
            try
            {
                next = ConfigLoader.Load(overrides);
            }
            catch (ConfigException e)
            {
                return Fail(trigger, e.Key, e.Message[(e.Key.Length + 2)..]);
            }
            var current = _store.Current;
            if (next.Qos.Enabled != current.Qos.Enabled)
                return Fail(trigger, "qos", next.Qos.Enabled ? "turning QoS on needs a restart" : "turning QoS off needs a restart");
            var kept = new List<string>();
            next = KeepStartupSettings(current, next, kept);
            PolicyConfig? policy = null;
            if (_tier is EmbeddedPolicyTier embedded)
            {
                try
                {
                    policy = (next.Policy.File is { } file ? PolicyConfigLoader.LoadFile(file) : PolicyHosting.FromQos(next.Qos))
                        with { Version = embedded.Config.Current.Version + 1 };
                }
                catch (PolicyConfigException e)
                {
                    return Fail(trigger, "policy.file: " + e.Key, e.Message);
                }
            }

            foreach (var key in kept)
                ReloadLog.NeedsRestart(_log, key);
            try
            {
                _store.Swap(next);
                _qos?.Reconfigure(next.Qos);
                _pools.Reconfigure(next);
                _mysqlPools?.Reconfigure(next);
                if (policy is not null && _tier is EmbeddedPolicyTier tier)
                    tier.Config.Swap(policy);
                _telemetry?.Reconfigure(next.Telemetry);
            }
            catch (Exception e)
            {
                // A validated snapshot should always apply; if a component refuses it, say so loudly.
                ReloadLog.ApplyFailed(_log, trigger, e);
                Interlocked.Increment(ref _failed);
                Volatile.Write(ref _lastSucceeded, 0);
                return new ReloadOutcome(false, Generation, "(apply)", "mproxy: applying the new configuration failed part-way: " + e.Message, kept);
            }
            var generation = Interlocked.Increment(ref _generation);
            Interlocked.Increment(ref _applied);
            Volatile.Write(ref _lastSucceeded, 1);
            ReloadLog.Reloaded(_log, trigger, generation, next.Databases.Count, next.Users.Count, next.Qos.Enabled ? next.Qos.Groups.Count : 0, next.Qos.Tenants.Count);
            return new ReloadOutcome(true, generation, null, $"configuration generation {generation} in force", kept);
        }
    }

    private ReloadOutcome Fail(string trigger, string key, string message)
    {
        Interlocked.Increment(ref _failed);
        Volatile.Write(ref _lastSucceeded, 0);
        ReloadLog.Failed(_log, trigger, key, message);
        return new ReloadOutcome(false, Generation, key, $"mproxy: configuration reload failed at {key}: {message}; the configuration in force is kept", []);
    }

    /// <summary>
    /// The new snapshot with the settings bound at start carried over from the one in force (their
    /// keys listed in <paramref name="kept"/> when the file changed them). A database's backends
    /// object is always carried over, so that its pools and monitor stay (reference-equal) in place.
    /// </summary>
    internal static EdgeConfig KeepStartupSettings(EdgeConfig current, EdgeConfig next, List<string> kept)
    {
        if (!Equals(current.Listen, next.Listen))
            kept.Add("listen");
        if (!SamePolicy(current.Policy, next.Policy))
            kept.Add("policy");
        if (current.Network != next.Network)
            kept.Add("network");
        if (!Equals(current.Telemetry.Otlp?.ToString(), next.Telemetry.Otlp?.ToString()) || current.Telemetry.Metrics != next.Telemetry.Metrics)
            kept.Add("telemetry.otlp / telemetry.metrics");
        var databases = new List<DatabaseConfig>(next.Databases.Count);
        for (var i = 0; i < next.Databases.Count; i++)
        {
            var database = next.Databases[i];
            var old = current.FindDatabase(database.Name);
            if (old is not null && (old.Backends is not null || database.Backends is not null))
            {
                if (old.Backends != database.Backends) // value equality, hosts and rules included
                    kept.Add($"databases[{i}].backends");
                database = database with { Backends = old.Backends, Primary = old.Primary };
            }
            databases.Add(database);
        }
        return next with
        {
            Listen = current.Listen,
            Policy = current.Policy,
            Network = current.Network,
            Telemetry = next.Telemetry with { Otlp = current.Telemetry.Otlp, Metrics = current.Telemetry.Metrics },
            Databases = databases,
        };
    }

    private static bool SamePolicy(PolicySettings a, PolicySettings b) =>
        a.Silos.SequenceEqual(b.Silos) && a.EdgeId == b.EdgeId && a.CallTimeout == b.CallTimeout && a.BackoffBase == b.BackoffBase
        && a.BackoffMax == b.BackoffMax && a.LocalShareFloorRuPerSecond.Equals(b.LocalShareFloorRuPerSecond)
        && a.MaxFingerprintsPerExchange == b.MaxFingerprintsPerExchange && a.File == b.File;
}

/// <summary>
/// What triggers a reload besides the admin console: a change of the <c>--config</c> file (a
/// <see cref="FileSystemWatcher"/> on its directory, debounced) and SIGHUP.
/// </summary>
internal sealed class ReloadTriggers(ConfigReloader reloader, ConfigStore config, TimeProvider time, ILogger<ReloadTriggers> log) : IHostedService, IDisposable
{
    private FileSystemWatcher? _watcher;
    private PosixSignalRegistration? _hangup;
    private ITimer? _debounce;

    public Task StartAsync(CancellationToken cancellationToken)
    {
        if (reloader.ConfigFile is not { } file)
            return Task.CompletedTask;
        var path = Path.GetFullPath(file);
        if (!OperatingSystem.IsWindows())
        {
            if (HangupSignal.UnignoreIfIgnored())
                ReloadLog.HangupWasIgnored(log);
            _hangup = PosixSignalRegistration.Create(PosixSignal.SIGHUP, context =>
            {
                context.Cancel = true; // the default action would end the process
                ReloadLog.HangupReceived(log, path);
                reloader.Reload("SIGHUP");
            });
        }
        if (!config.Current.Reload.WatchFile)
            return Task.CompletedTask;
        try
        {
            _debounce = time.CreateTimer(static state => ((ConfigReloader)state!).Reload("file change"), reloader, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
            _watcher = new FileSystemWatcher(Path.GetDirectoryName(path)!, Path.GetFileName(path))
            {
                NotifyFilter = NotifyFilters.LastWrite | NotifyFilters.FileName | NotifyFilters.Size | NotifyFilters.CreationTime,
            };
            _watcher.Changed += OnChanged;
            _watcher.Created += OnChanged;
            _watcher.Renamed += OnChanged;
            _watcher.EnableRaisingEvents = true;
            ReloadLog.Watching(log, path);
        }
        catch (Exception e) when (e is IOException or ArgumentException or PlatformNotSupportedException or UnauthorizedAccessException)
        {
            ReloadLog.WatchFailed(log, path, e.Message);
        }
        return Task.CompletedTask;
    }

    private void OnChanged(object sender, FileSystemEventArgs e) =>
        _debounce?.Change(config.Current.Reload.Debounce, Timeout.InfiniteTimeSpan);

    public Task StopAsync(CancellationToken cancellationToken)
    {
        Dispose();
        return Task.CompletedTask;
    }

    public void Dispose()
    {
        _watcher?.Dispose();
        _watcher = null;
        _hangup?.Dispose();
        _hangup = null;
        _debounce?.Dispose();
        _debounce = null;
    }
}
