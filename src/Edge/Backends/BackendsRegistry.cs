using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;
using MProxy.Edge.Configuration;

namespace MProxy.Edge.Backends;

/// <summary>
/// The <see cref="DatabaseBackends"/> of one protocol adapter's databases, created on first use and
/// started at once: a database with a <c>backends:</c> section and monitor credentials gets one; a
/// single unmonitored host gets none. When a host's breaker opens or it stops being the primary,
/// <c>closeHost</c> is told to close that host's pools (their connections are likely dead).
/// </summary>
/// <param name="protocol">The adapter's protocol: databases of the other one are not its business.</param>
/// <param name="createProbe">The adapter's health check for a database's monitor credentials.</param>
/// <param name="closeHost">Closes a host's pools: (database, host, reason).</param>
/// <param name="time">The clock of the monitors.</param>
/// <param name="log">The monitors' log.</param>
public sealed class BackendsRegistry(
    DatabaseProtocol protocol, Func<DatabaseConfig, MonitorCredentials, IBackendProbe> createProbe, Action<string, HostPort, string> closeHost, TimeProvider time, ILogger log)
    : IAsyncDisposable
{
    private readonly ConcurrentDictionary<string, DatabaseBackends> _backends = new();
    private readonly Lock _createLock = new();

    public ICollection<DatabaseBackends> All => _backends.Values;

    /// <summary>The database's monitor, balancer and router (started on first use), or null for a single unmonitored host.</summary>
    public DatabaseBackends? For(DatabaseConfig database)
    {
        if (database.Backends is not { Monitor: { } monitor } config || database.Protocol != protocol)
            return null;
        if (_backends.TryGetValue(database.Name, out var existing))
            return existing;
        lock (_createLock)
        {
            if (_backends.TryGetValue(database.Name, out existing))
                return existing;
            var backends = new DatabaseBackends(database.Name, config, createProbe(database, monitor), time, log);
            backends.Monitor.BreakerChanged += change =>
            {
                if (change.To == BreakerState.Open)
                    closeHost(database.Name, config.Hosts[change.Backend], "its circuit breaker opened");
            };
            backends.Monitor.PrimaryChanged += change =>
            {
                if (change.Previous is { } previous && previous.Endpoint != change.Current?.Endpoint)
                    closeHost(database.Name, previous.Endpoint, "it is no longer the primary");
            };
            _backends[database.Name] = backends;
            backends.Start();
            return backends;
        }
    }

    /// <summary>
    /// After a reload: stops (in the background) the backends of databases that are gone or whose
    /// backends section changed, then starts those of the new configuration's databases.
    /// </summary>
    public void Reconfigure(EdgeConfig config)
    {
        foreach (var (name, backends) in _backends)
        {
            if (config.FindDatabase(name) is { } database && database.Protocol == protocol && database.Backends == backends.Config)
                continue;
            if (_backends.TryRemove(new(name, backends)))
                _ = backends.DisposeAsync().AsTask();
        }
        foreach (var database in config.Databases)
            For(database);
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var backends in _backends.Values)
            await backends.DisposeAsync().ConfigureAwait(false);
    }
}
