using MProxy.Grains.Configuration;
using MProxy.Grains.Storage;
using MProxy.Simulation.Backends;
using MProxy.Simulation.Core;
using MProxy.Simulation.Edges;
using MProxy.Simulation.Faults;
using MProxy.Simulation.Invariants;
using MProxy.Simulation.Policy;
using MProxy.Simulation.Workloads;

namespace MProxy.Simulation.World;

/// <summary>
/// One simulated deployment, everything derived from one seed: fake database hosts, silos on a
/// shared grain store behind a simulated network, edges built from the real components, tenants'
/// clients, a fault plan, and the invariant checks — all driven by one clock on one thread.
/// </summary>
public sealed class SimWorld
{
    private readonly SimEdge?[] _slots;
    private readonly int[] _generations;
    private readonly List<SimEdge> _edges = [];
    private readonly List<SimClient> _clients = [];
    private readonly FaultInjector _faults;

    public SimWorld(SimOptions options, TextWriter? verbose = null)
    {
        Options = options;
        var clock = new SimClock();
        Trace = new SimTrace(clock, verbose);
        Sim = new SimContext(options.Seed, clock, Trace);
        Sim.Checks.Attach(this);
        Cluster = new FakeCluster(Sim, options.Replicas, options.Host);
        Store = new InMemoryGrainStore();
        PolicyConfig = new PolicyConfigStore(options.Policy);
        Network = new SimNetwork(Sim, options.NetworkDelayMs, options.NetworkLoss);
        var skews = Sim.Random.Fork("skew");
        Silos = [.. Enumerable.Range(0, options.Silos).Select(i =>
            new SimSilo(Sim, i, Store, PolicyConfig, TimeSpan.FromTicks((long)(options.SiloClockSkew.Ticks * skews.Uniform(-1, 1)))))];
        _slots = new SimEdge?[options.Edges];
        _generations = new int[options.Edges];
        for (var i = 0; i < options.Edges; i++)
            _slots[i] = NewEdge(i);
        foreach (var tenant in options.Tenants)
            for (var c = 0; c < tenant.Clients; c++)
                _clients.Add(new SimClient(this, tenant, c));
        _faults = new FaultInjector(this);
    }

    public SimOptions Options { get; }

    public SimContext Sim { get; }

    public SimTrace Trace { get; }

    public SimChecks Checks => Sim.Checks;

    public FakeCluster Cluster { get; }

    public InMemoryGrainStore Store { get; }

    public PolicyConfigStore PolicyConfig { get; }

    public SimNetwork Network { get; }

    public IReadOnlyList<SimSilo> Silos { get; }

    /// <summary>Every edge process there has been (crashed ones included).</summary>
    public IReadOnlyList<SimEdge> Edges => _edges;

    public bool WorkloadOver => Sim.Clock.Elapsed >= Options.Duration;

    /// <summary>Runs a seed's world on a thread of its own (no synchronization context, the default task scheduler).</summary>
    public static SimResult Run(ulong seed, TextWriter? verbose = null) => Run(SimOptions.Generate(seed), verbose);

    public static SimResult Run(SimOptions options, TextWriter? verbose = null)
    {
        SimResult? result = null;
        Exception? failure = null;
        var thread = new Thread(() =>
        {
            try
            {
                result = new SimWorld(options, verbose).Run();
            }
            catch (Exception e)
            {
                failure = e;
            }
        }, maxStackSize: 64 * 1024 * 1024)
        {
            Name = $"sim-{options.Seed}",
            IsBackground = true,
        };
        thread.Start();
        thread.Join();
        if (failure is not null)
            throw new InvalidOperationException($"seed {options.Seed}: the simulation itself failed", failure);
        return result!;
    }

    /// <summary>Runs the world to its end on the calling thread (which must have no synchronization context).</summary>
    public SimResult Run()
    {
        var clock = Sim.Clock;
        clock.BindToCurrentThread();
        var started = DateTime.UtcNow;
        var description = Options.Describe();
        Trace.Note(description);
        foreach (var edge in _edges)
            edge.Start();
        foreach (var client in _clients)
            _ = RunClientAsync(client);
        _faults.Schedule();

        var hardEnd = (Options.Duration + Options.MaxDrain).Ticks;
        long? settleUntil = null;
        while (!Checks.Failed && clock.Escape is null)
        {
            if (clock.NextDue is not { } due || due > hardEnd)
                break;
            Checks.BeforeEvent();
            clock.RunNext(hardEnd);
            while (Sim.SlotWaits.Poll())
            {
            }
            Checks.AfterEvent();
            if (settleUntil is null && WorkloadOver && _faults.Active == 0 && _clients.TrueForAll(c => c.Done) && Checks.Requests.Open == 0)
                settleUntil = clock.NowTicks + TimeSpan.FromSeconds(5).Ticks;
            if (settleUntil is { } until && clock.NowTicks >= until)
                break;
        }
        if (clock.Escape is { } escape)
            Checks.Fail("determinism", escape);
        if (!Checks.Failed)
        {
            if (settleUntil is null)
                Checks.Fail("request-answered", $"the world did not drain within {Options.MaxDrain.TotalSeconds:0}s after the clients stopped ({Checks.Requests.Open} requests open, {_faults.Active} faults active, {_clients.Count(c => !c.Done)} clients running)");
            else
                Checks.AtEnd();
        }
        var result = new SimResult(Options, description, Trace.Hash, Checks.Violation, [.. Trace.Tail], clock.Elapsed, clock.EventsRun, Trace.Lines,
            DateTime.UtcNow - started, Checks.Requests, Checks);
        Trace.Note(result.Summary());
        return result;
    }

    private async Task RunClientAsync(SimClient client)
    {
        try
        {
            await client.RunAsync();
        }
        catch (Exception e)
        {
            Checks.Fail("unexpected-exception", $"client of {client.Tenant.Name}: {e}");
        }
    }

    private SimEdge NewEdge(int index)
    {
        var edge = new SimEdge(Sim, Options, Cluster, index, _generations[index], new SimPolicyTier(Sim, Network, Silos, index));
        _edges.Add(edge);
        return edge;
    }

    /// <summary>A live edge for a client to connect to, at random; null when every edge is down.</summary>
    public SimEdge? PickEdge(SimRandom random)
    {
        var up = _slots.Where(e => e is { Up: true }).ToList();
        return up.Count == 0 ? null : up[random.Next(up.Count)];
    }

    public void CrashEdge(int index) => _slots[index]?.Crash();

    /// <summary>A new edge process in the slot of a crashed one (a new edge id, empty caches).</summary>
    public void ReplaceEdge(int index)
    {
        _generations[index]++;
        var edge = NewEdge(index);
        _slots[index] = edge;
        edge.Start();
    }

    /// <summary>How many edge processes were alive at some time between <paramref name="from"/> and <paramref name="to"/>.</summary>
    public int EdgesAliveBetween(long from, long to)
    {
        var count = 0;
        foreach (var edge in _edges)
            if (edge.StartedAt <= to && (edge.StoppedAt is not { } stopped || stopped >= from))
                count++;
        return count;
    }
}
