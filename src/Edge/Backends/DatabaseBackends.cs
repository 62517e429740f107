using Microsoft.Extensions.Logging;
using MProxy.Edge.Routing;

namespace MProxy.Edge.Backends;

/// <summary>
/// Everything routing needs for one database, built from its <see cref="BackendsConfig"/>: the
/// <see cref="BackendMonitor"/> (health, breakers, topology, failover wait), the
/// <see cref="ReplicaBalancer"/> and the <see cref="RouteDecider"/>. One per database; a reload that
/// changes the backends section builds a new one and disposes the old.
/// </summary>
/// <remarks>Thread-safe, as its parts are. Owns the probe when it is <see cref="IAsyncDisposable"/>.</remarks>
public sealed class DatabaseBackends : IAsyncDisposable
{
    private readonly IBackendProbe _probe;

    /// <exception cref="ArgumentException">the configuration has no monitor credentials (a single host without health checks needs no DatabaseBackends).</exception>
    public DatabaseBackends(string database, BackendsConfig config, IBackendProbe probe, TimeProvider time, ILogger log)
    {
        if (config.Monitor is null)
            throw new ArgumentException("backends without monitor credentials have no health checks: route everything to the one host instead", nameof(config));
        Config = config;
        _probe = probe;
        Monitor = new BackendMonitor(database, config, probe, time, log);
        var seed = config.Seed ?? BackendMonitor.StableSeed(database);
        Balancer = new ReplicaBalancer(config.Hosts.Count, config.LatencyDecay, time, new Random(seed));
        Router = new RouteDecider(config, Balancer, time);
    }

    public BackendsConfig Config { get; }

    /// <summary>The classifier rules of this database (its write functions).</summary>
    public RoutingRules Rules => Config.Rules;

    public BackendMonitor Monitor { get; }

    public ReplicaBalancer Balancer { get; }

    public RouteDecider Router { get; }

    /// <summary>The current snapshot (<see cref="BackendMonitor.Current"/>).</summary>
    public BackendTopology Topology => Monitor.Current;

    /// <summary>Decides where a transaction goes on the current snapshot (see <see cref="RouteDecider"/>).</summary>
    public RouteDecision Route(in StatementInfo statement, bool sessionHasState, CausalToken token) =>
        Router.Decide(statement, sessionHasState, token, Monitor.Current);

    public void Start() => Monitor.Start();

    public async ValueTask DisposeAsync()
    {
        await Monitor.DisposeAsync().ConfigureAwait(false);
        if (_probe is IAsyncDisposable disposable)
            await disposable.DisposeAsync().ConfigureAwait(false);
    }
}
