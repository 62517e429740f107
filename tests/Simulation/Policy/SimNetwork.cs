using MProxy.Simulation.Core;

namespace MProxy.Simulation.Policy;

/// <summary>
/// The network between edges and silos: each message is delayed (log-normal), may be lost, and is
/// dropped while its two ends are partitioned. A partitioned or lost message simply never arrives —
/// the sender's own timeout decides, as with a real black hole.
/// </summary>
public sealed class SimNetwork(SimContext sim, double delayMs, double loss)
{
    private readonly SimRandom _random = sim.Random.Fork("network");
    private readonly HashSet<(int Edge, int Silo)> _cut = [];

    public double Loss { get; set; } = loss;

    public double DelayFactor { get; set; } = 1;

    public bool IsCut(int edge, int silo) => _cut.Contains((edge, silo));

    /// <summary>Whether any link of <paramref name="edge"/> to any silo is cut.</summary>
    public bool IsPartitioned(int edge) => _cut.Any(c => c.Edge == edge);

    public void Cut(int edge, int silo) => _cut.Add((edge, silo));

    public void Heal(int edge, int silo) => _cut.Remove((edge, silo));

    public void HealAll() => _cut.Clear();

    /// <summary>Sends a message from <paramref name="edge"/> to <paramref name="silo"/> (or back): <paramref name="deliver"/> runs on arrival, unless it is lost.</summary>
    public void Send(int edge, int silo, string what, Action deliver)
    {
        var delay = TimeSpan.FromMilliseconds(_random.LogNormal(delayMs, 0.5) * DelayFactor);
        var lost = _random.Chance(Loss);
        sim.Clock.After(delay, () =>
        {
            // A partition that started while the message was in flight drops it too.
            if (lost || IsCut(edge, silo))
            {
                sim.Trace.Write("net", $"{what} edge{edge}<->silo{silo} dropped{(lost ? " (loss)" : " (partition)")}");
                return;
            }
            deliver();
        });
    }
}
