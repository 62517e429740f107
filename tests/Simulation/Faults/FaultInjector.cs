using MProxy.Simulation.Backends;
using MProxy.Simulation.World;

namespace MProxy.Simulation.Faults;

/// <summary>
/// Applies a world's fault plan on the simulated clock: each fault starts at its time and heals after
/// its duration (a crashed host restarts — as a replica of the new primary if one was promoted — a
/// frozen one thaws, a partition heals, a crashed silo or edge comes back). Separate from the
/// workloads and from the checks.
/// </summary>
public sealed class FaultInjector(SimWorld world)
{
    private int _active;

    /// <summary>Faults started and not yet healed.</summary>
    public int Active => _active;

    public void Schedule()
    {
        foreach (var fault in world.Options.Faults)
        {
            _active++;
            world.Sim.Clock.At(fault.At.Ticks, () => Start(fault));
        }
    }

    private void Start(FaultSpec fault)
    {
        var sim = world.Sim;
        var clock = sim.Clock;
        var cluster = world.Cluster;
        sim.Trace.Write("fault", "start " + fault);
        void Heal(TimeSpan after, Action action) => clock.After(after, () =>
        {
            sim.Trace.Write("fault", "heal " + fault);
            action();
            _active--;
        });
        switch (fault.Kind)
        {
            case FaultKind.CrashPrimary:
                {
                    var primary = cluster.Leader;
                    if (primary is null)
                    {
                        _active--;
                        return;
                    }
                    primary.Crash();
                    FakeHost? promoted = null;
                    if (fault.PromoteAfter is { } promoteAfter)
                        clock.After(promoteAfter, () => promoted = cluster.PromoteBestReplica());
                    Heal(fault.Duration, () => primary.Restart(promoted is null ? null : cluster.Leader));
                    break;
                }
            case FaultKind.CrashReplica:
                {
                    var host = cluster.Hosts[fault.Target];
                    host.Crash();
                    Heal(fault.Duration, () => host.Restart(host.InRecovery ? null : cluster.Leader is { } leader && leader != host ? leader : null));
                    break;
                }
            case FaultKind.Freeze:
                {
                    var host = cluster.Hosts[fault.Target];
                    host.Freeze();
                    Heal(fault.Duration, host.Thaw);
                    break;
                }
            case FaultKind.Slowdown:
                {
                    var host = cluster.Hosts[fault.Target];
                    host.Slowdown *= fault.Factor;
                    Heal(fault.Duration, () => host.Slowdown /= fault.Factor);
                    break;
                }
            case FaultKind.PauseReplay:
                {
                    var host = cluster.Hosts[fault.Target];
                    host.PauseReplay();
                    Heal(fault.Duration, host.ResumeReplay);
                    break;
                }
            case FaultKind.PromoteWhilePrimaryUp:
                {
                    var old = cluster.Leader;
                    var promoted = cluster.PromoteBestReplica();
                    if (old is null || promoted is null)
                    {
                        _active--;
                        return;
                    }
                    // The old primary is fenced (shut down) later, and rebuilt as a replica of the new one.
                    Heal(fault.Duration, () =>
                    {
                        old.Crash();
                        _active++;
                        Heal(TimeSpan.FromSeconds(2), () => old.Restart(cluster.Leader));
                    });
                    break;
                }
            case FaultKind.Partition:
                foreach (var edge in fault.Edges)
                    foreach (var silo in fault.Silos)
                        world.Network.Cut(edge, silo);
                Heal(fault.Duration, () =>
                {
                    foreach (var edge in fault.Edges)
                        foreach (var silo in fault.Silos)
                            world.Network.Heal(edge, silo);
                });
                break;
            case FaultKind.CrashSilo:
                {
                    var silo = world.Silos[fault.Target];
                    silo.Crash();
                    Heal(fault.Duration, silo.Restart);
                    break;
                }
            case FaultKind.CrashEdge:
                world.CrashEdge(fault.Target);
                Heal(fault.Duration, () => world.ReplaceEdge(fault.Target));
                break;
            case FaultKind.LossyNetwork:
                {
                    var loss = world.Network.Loss;
                    world.Network.Loss = fault.Factor;
                    world.Network.DelayFactor *= 5;
                    Heal(fault.Duration, () =>
                    {
                        world.Network.Loss = loss;
                        world.Network.DelayFactor /= 5;
                    });
                    break;
                }
            default:
                _active--;
                break;
        }
    }
}
