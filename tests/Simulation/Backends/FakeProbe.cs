using MProxy.Edge.Backends;
using MProxy.Edge.Configuration;
using MProxy.Simulation.Core;

namespace MProxy.Simulation.Backends;

/// <summary>
/// The monitor's health check against fake hosts (the seam <see cref="IBackendProbe"/>): answers
/// after the host's round trip with its role and WAL position; a crashed host refuses at once, a
/// frozen one never answers (the monitor's timeout decides).
/// </summary>
public sealed class FakeProbe(SimContext sim, FakeCluster cluster, int edge) : IBackendProbe
{
    public ValueTask<BackendProbeResult> ProbeAsync(HostPort endpoint, CancellationToken cancellationToken)
    {
        sim.Clock.CheckThread("FakeProbe.ProbeAsync");
        var host = cluster.Find(endpoint) ?? throw new InvalidOperationException($"no fake host {endpoint}");
        var done = new TaskCompletionSource<BackendProbeResult>();
        var registration = cancellationToken.Register(() => done.TrySetCanceled(cancellationToken));
        sim.Clock.After(host.RoundTrip(), () => host.WhenResponsive(() =>
        {
            registration.Dispose();
            var result = !host.Up
                ? BackendProbeResult.Failed($"connection to {endpoint} refused")
                : host.InRecovery
                    ? BackendProbeResult.Replica(new Lsn(host.Lsn), new Lsn(host.Lsn))
                    : BackendProbeResult.Primary(new Lsn(host.Lsn), host.Timeline);
            if (done.TrySetResult(result))
                sim.Trace.Write($"edge{edge}.probe", $"{host.Name} {(result.Succeeded ? (result.InRecovery ? "replica" : "primary") + $" lsn={result.Lsn} tl={result.Timeline}" : result.Error)}");
        }));
        return new ValueTask<BackendProbeResult>(done.Task);
    }
}
