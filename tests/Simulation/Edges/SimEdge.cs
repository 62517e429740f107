using Microsoft.Extensions.Logging.Abstractions;
using MProxy.Edge.Backends;
using MProxy.Edge.Policy;
using MProxy.Edge.Pooling;
using MProxy.Edge.Qos;
using MProxy.Simulation.Backends;
using MProxy.Simulation.Core;
using MProxy.Simulation.Policy;
using MProxy.Simulation.World;

namespace MProxy.Simulation.Edges;

/// <summary>
/// One edge process: the real QoS gate, policy client, backend monitor / balancer / router and
/// pools, wired as the edge's host wires them, with the fakes behind their seams. Its periodic
/// work runs on the simulated clock: the janitor (QoS tick, pool upkeep, backend demand), the
/// policy client's exchange loop and the monitor's probe loop.
/// </summary>
public sealed class SimEdge
{
    public const string Database = "app";

    private readonly SimContext _sim;
    private readonly SimOptions _options;
    private readonly FakeCluster _cluster;
    private readonly Dictionary<int, SimPool> _pools = [];
    private readonly List<SimPool> _allPools = [];
    private readonly List<SimSession> _sessions = [];
    private readonly CancellationTokenSource _stop = new();
    private TaskCompletionSource _topologySignal = new();

    public SimEdge(SimContext sim, SimOptions options, FakeCluster cluster, int index, int generation, SimPolicyTier tier)
    {
        _sim = sim;
        _options = options;
        _cluster = cluster;
        Index = index;
        Name = generation == 0 ? $"edge{index}" : $"edge{index}.{generation}";
        Tier = tier;
        var random = sim.Random.Fork("edge-" + Name);
        Policy = new PolicyClient(tier, new PolicyClientOptions
        {
            EdgeId = Name,
            CallTimeout = options.PolicyCallTimeout,
            BackoffBase = options.PolicyBackoffBase,
            BackoffMax = options.PolicyBackoffMax,
            LocalShareFloorRuPerSecond = 1,
            JitterSeed = random.NextSeed(),
        }, sim.Clock, NullLogger<PolicyClient>.Instance);
        Gate = new QosGate(options.Qos, sim.Clock, new QosPolicySeams(Policy, Policy, Policy));
        Backends = new DatabaseBackends(Database, options.Backends with { Seed = random.NextSeed() }, new FakeProbe(sim, cluster, index), sim.Clock, NullLogger.Instance);
        // As the PostgreSQL pool registry does: a host whose breaker opens, or that stops being the
        // primary, loses its pools (their connections are likely dead).
        Backends.Monitor.BreakerChanged += change =>
        {
            _sim.Trace.Write(Name, $"breaker {cluster.Hosts[change.Backend].Name} {change.From} -> {change.To} ({change.Reason})");
            if (change.To == BreakerState.Open)
                CloseHost(change.Backend, "its circuit breaker opened");
        };
        Backends.Monitor.PrimaryChanged += change =>
        {
            _sim.Trace.Write(Name, $"primary {change.Previous?.Endpoint.Host ?? "none"} -> {change.Current?.Endpoint.Host ?? "none"} epoch {change.Epoch}");
            if (change.Previous is { } previous && previous.Endpoint != change.Current?.Endpoint)
                CloseHost(previous.Index, "it is no longer the primary");
        };
        // Primary waiters in the product resume on the thread pool (RunContinuationsAsynchronously):
        // here they resume in an event of their own, right after the publication.
        Backends.Monitor.TopologyChanged += _ => _sim.Clock.After(TimeSpan.Zero, SignalTopology);
    }

    public int Index { get; }

    public string Name { get; }

    public bool Up { get; private set; } = true;

    /// <summary>When the process started and (once it crashed) stopped, in simulated ticks.</summary>
    public long StartedAt { get; private set; }

    public long? StoppedAt { get; private set; }

    public SimPolicyTier Tier { get; }

    public PolicyClient Policy { get; }

    internal QosGate Gate { get; }

    public DatabaseBackends Backends { get; }

    /// <summary>Every pool this edge has had, closed ones included (for the checks).</summary>
    public IReadOnlyList<SimPool> AllPools => _allPools;

    public IReadOnlyList<SimSession> Sessions => _sessions;

    internal SimOptions Options => _options;

    internal SimContext Sim => _sim;

    public void Start()
    {
        StartedAt = _sim.Clock.NowTicks;
        Backends.Start();
        _ = JanitorAsync();
        _ = PolicyLoopAsync();
        _sim.Trace.Write(Name, "started");
    }

    /// <summary>The edge process dies: every client connection drops, nothing is flushed, state is lost.</summary>
    public void Crash()
    {
        if (!Up)
            return;
        Up = false;
        StoppedAt = _sim.Clock.NowTicks;
        _stop.Cancel();
        _sim.Trace.Write(Name, "CRASH");
        foreach (var session in _sessions.ToList())
            session.Kill();
        foreach (var pool in _allPools)
        {
            pool.Closed = true;
            pool.Connections.Close();
        }
        _pools.Clear();
        _ = Backends.DisposeAsync().AsTask();
        Gate.Dispose();
    }

    public SimSession OpenSession(string user)
    {
        var session = new SimSession(this, user, _sim.NextId());
        _sessions.Add(session);
        return session;
    }

    internal void Forget(SimSession session) => _sessions.Remove(session);

    /// <summary>The pool of host <paramref name="host"/>, created on first use (with its scheduler).</summary>
    public SimPool PoolFor(int host)
    {
        if (_pools.TryGetValue(host, out var pool))
            return pool;
        var fake = _cluster.Hosts[host];
        var name = $"{Name}/{Database}@{fake.Name}#{_allPools.Count}";
        var factory = new FakeConnectionFactory(_sim, fake, name, Index, _options.Pool.ConnectTimeout, Backends.Monitor);
        var connections = new ServerPool<FakeServerConnection>(name, _options.Pool, factory, _sim.Clock);
        var scheduler = Gate.CreateScheduler(name, _options.Pool.Size);
        pool = new SimPool(name, fake, connections, scheduler, factory);
        _pools[host] = pool;
        _allPools.Add(pool);
        _sim.Trace.Write(Name, $"pool {name} created");
        return pool;
    }

    private void CloseHost(int host, string reason)
    {
        if (!_pools.Remove(host, out var pool))
            return;
        pool.Closed = true;
        _sim.Trace.Write(Name, $"pool {pool.Name} closed: {reason}");
        pool.Connections.Close();
    }

    /// <summary>Completes when the monitor publishes a new snapshot (or a pool reports a connect), in an event of its own.</summary>
    internal Task TopologySignal => _topologySignal.Task;

    private void SignalTopology()
    {
        var signal = _topologySignal;
        _topologySignal = new TaskCompletionSource();
        signal.TrySetResult();
    }

    /// <summary>
    /// <c>BackendMonitor.WaitForPrimaryAsync</c> on the synchronous core: the usable primary, waiting
    /// for publications up to the failover wait; null when none came in time.
    /// </summary>
    internal async Task<BackendStatus?> WaitForPrimaryAsync()
    {
        var started = _sim.Clock.GetTimestamp();
        while (true)
        {
            var signal = TopologySignal;
            if (Backends.Monitor.TryGetUsablePrimary(out var primary))
                return primary;
            var remaining = Backends.Config.FailoverWait - _sim.Clock.GetElapsedTime(started);
            if (remaining <= TimeSpan.Zero || !Up)
                return null;
            await Task.WhenAny(signal, _sim.Clock.Delay(remaining));
        }
    }

    private async Task JanitorAsync()
    {
        while (true)
        {
            await _sim.Clock.Delay(_options.JanitorInterval);
            if (!Up)
                return;
            var cancels = Gate.Tick();
            if (cancels > 0)
                _sim.Trace.Write(Name, $"janitor: {cancels} runaway cancels");
            foreach (var pool in _pools.Values)
            {
                pool.Connections.Maintain();
                var stats = pool.Connections.GetStats();
                Policy.ReportBackend(pool.Host.Name, Math.Min(stats.Size, stats.Total + stats.Waiting), stats.Total - stats.Opening);
            }
        }
    }

    private async Task PolicyLoopAsync()
    {
        // PolicyClient.ExecuteAsync's loop, on the simulated clock (BackgroundService would start it on the thread pool).
        var delay = TimeSpan.Zero;
        while (Up)
        {
            if (delay > TimeSpan.Zero)
                await _sim.Clock.Delay(delay);
            if (!Up)
                return;
            try
            {
                delay = await Policy.ExchangeOnceAsync(_stop.Token);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            var status = Policy.Status;
            _sim.Trace.Write(Name, $"exchange -> {status.State} failures={status.ConsecutiveFailures} edges={status.LiveEdges} next={SimTrace.Ms(delay)}");
        }
    }
}
