using MProxy.Edge.Configuration;
using MProxy.Simulation.Core;

namespace MProxy.Simulation.Backends;

/// <summary>One database's hosts: a primary and its streaming replicas, and the failover operations an operator (or Patroni) performs on them.</summary>
public sealed class FakeCluster
{
    private readonly SimContext _sim;

    public FakeCluster(SimContext sim, int replicas, FakeHostOptions options)
    {
        _sim = sim;
        var hosts = new List<FakeHost>();
        for (var i = 0; i <= replicas; i++)
            hosts.Add(new FakeHost(sim, i, primary: i == 0, options) { Cluster = this });
        for (var i = 1; i < hosts.Count; i++)
            hosts[i].Upstream = hosts[0];
        Hosts = hosts;
    }

    public IReadOnlyList<FakeHost> Hosts { get; }

    public FakeHost? Find(HostPort endpoint)
    {
        foreach (var host in Hosts)
            if (host.Endpoint == endpoint)
                return host;
        return null;
    }

    /// <summary>The up host that is not in recovery on the highest timeline (what a failover manager calls the leader).</summary>
    public FakeHost? Leader
    {
        get
        {
            FakeHost? best = null;
            foreach (var host in Hosts)
                if (host.Up && !host.InRecovery && (best is null || host.Timeline > best.Timeline))
                    best = host;
            return best;
        }
    }

    /// <summary>Promotes the most advanced up replica and points the other replicas at it; null when there is none.</summary>
    public FakeHost? PromoteBestReplica()
    {
        FakeHost? best = null;
        foreach (var host in Hosts)
            if (host.Up && host.InRecovery && (best is null || host.Lsn > best.Lsn))
                best = host;
        if (best is null)
            return null;
        var timeline = Hosts.Max(h => h.Timeline) + 1;
        best.Promote(timeline);
        foreach (var host in Hosts)
            if (host != best && host.InRecovery)
                host.Upstream = best;
        return best;
    }
}
