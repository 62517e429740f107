using MProxy.Edge.Pooling;
using MProxy.Edge.Qos;
using MProxy.Simulation.Backends;

namespace MProxy.Simulation.Edges;

/// <summary>
/// One pool of an edge — the real <see cref="ServerPool{TConnection}"/> over a fake host, and the
/// real <see cref="QosScheduler"/> in front of it — as the PostgreSQL pool registry builds it (one
/// per host, replaced when its host's breaker opens or it stops being the primary).
/// </summary>
public sealed class SimPool
{
    internal SimPool(string name, FakeHost host, ServerPool<FakeServerConnection> connections, QosScheduler scheduler, FakeConnectionFactory factory)
    {
        Name = name;
        Host = host;
        Connections = connections;
        Scheduler = scheduler;
        Factory = factory;
    }

    public string Name { get; }

    public FakeHost Host { get; }

    public int HostIndex => Host.Index;

    public ServerPool<FakeServerConnection> Connections { get; }

    internal QosScheduler Scheduler { get; }

    public FakeServerConnection? Welcome { get; set; }

    public FakeConnectionFactory Factory { get; }

    /// <summary>Closed by the registry (breaker opened, no longer the primary, edge stopped).</summary>
    public bool Closed { get; set; }

    /// <summary>A connection has been opened once (what the PostgreSQL session needs to greet clients).</summary>
    public bool Welcomed { get; set; }

    public override string ToString() => Name;
}
