using MProxy.Abstractions.Policy;
using MProxy.Grains.Edges;
using MProxy.Grains.Hosting;

namespace MProxy.Grains.Exchange;

/// <summary>
/// The membership view: how many edges reported within the liveness window, read from the edge
/// grains' records (so every silo on one store sees every edge) and cached for one exchange interval.
/// </summary>
public sealed class EdgeMembership(PolicyGrainFactory grains)
{
    private readonly Lock _lock = new();
    private DateTimeOffset _readAt = DateTimeOffset.MinValue;
    private HashSet<EdgeId> _live = [];

    public async Task<int> LiveEdgesAsync(EdgeId caller, CancellationToken cancellationToken)
    {
        var now = grains.Host.Time.GetUtcNow();
        var config = grains.Config.Current;
        HashSet<EdgeId> live;
        lock (_lock)
            live = now - _readAt < config.ExchangeInterval ? _live : [];
        if (live.Count == 0)
        {
            live = [];
            foreach (var (key, state) in await grains.Host.ListAsync(PolicyGrainFactory.EdgeType, Hosting.GrainStateJsonContext.Default.EdgeState, cancellationToken).ConfigureAwait(false))
                if (EdgeLogic.IsLive(state, config, now))
                    live.Add(new EdgeId(key));
            lock (_lock)
            {
                _live = live;
                _readAt = now;
            }
        }
        return live.Contains(caller) ? live.Count : live.Count + 1;
    }
}
