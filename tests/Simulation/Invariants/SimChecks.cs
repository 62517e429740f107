using MProxy.Simulation.Core;
using MProxy.Simulation.Policy;
using MProxy.Simulation.World;

namespace MProxy.Simulation.Invariants;

/// <summary>
/// The invariant checkers of one world, apart from the workloads and fault injectors: each one
/// observes the real components (and the fakes' ground truth) at its hooks or after every event, and
/// the first violation stops the run with its name and a message.
/// </summary>
public sealed class SimChecks
{
    private readonly SimContext _sim;
    private SimWorld? _world;
    private long _nextDeadlineCheck;

    public SimChecks(SimContext sim)
    {
        _sim = sim;
        Connections = new ConnectionChecks(sim);
        Priority = new PriorityChecks(sim);
        Pools = new PoolChecks(sim);
        Budgets = new BudgetChecks(sim);
        Leases = new LeaseChecks(sim);
        Requests = new RequestLedger(sim);
    }

    public ConnectionChecks Connections { get; }

    public PriorityChecks Priority { get; }

    public PoolChecks Pools { get; }

    public BudgetChecks Budgets { get; }

    public LeaseChecks Leases { get; }

    public RequestLedger Requests { get; }

    /// <summary>The first violation: which invariant and what happened (null: none).</summary>
    public Violation? Violation { get; private set; }

    public bool Failed => Violation is not null;

    internal void Attach(SimWorld world) => _world = world;

    public void Fail(string invariant, string message)
    {
        if (Violation is not null)
            return;
        Violation = new Violation(invariant, message, _sim.Clock.NowTicks);
        _sim.Trace.Write("CHECK", $"VIOLATION of {invariant}: {message}");
    }

    public void BeforeEvent() => Priority.BeforeEvent();

    public void AfterEvent()
    {
        var world = _world!;
        Priority.AfterEvent();
        Pools.AfterEvent(world);
        Budgets.AfterEvent(world);
        if (_sim.Clock.NowTicks >= _nextDeadlineCheck)
        {
            _nextDeadlineCheck = _sim.Clock.NowTicks + TimeSpan.TicksPerSecond;
            Requests.CheckDeadline(world.Options.RequestDeadline);
        }
    }

    public void OnSiloExchange(SimSilo silo) => Leases.OnSiloExchange(_world!, silo);

    /// <summary>At the end of the drain: every request answered, nothing leaked.</summary>
    public void AtEnd()
    {
        Requests.CheckAllDone();
        Pools.CheckNothingLeaked(_world!);
    }
}

/// <summary>A broken invariant: its name, what happened, and when.</summary>
public sealed record Violation(string Invariant, string Message, long At)
{
    public override string ToString() => $"{Invariant} at {SimTrace.Stamp(At).Trim()}s: {Message}";
}
