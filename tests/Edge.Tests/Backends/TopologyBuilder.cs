using System.Collections.Immutable;
using MProxy.Edge.Backends;
using MProxy.Edge.Configuration;

namespace MProxy.Edge.Tests.Backends;

/// <summary>Builds topology snapshots by hand for balancer and route tests.</summary>
internal static class TopologyBuilder
{
    public static HostPort Host(int index) => new($"10.0.0.{index + 1}", 5432);

    /// <summary>Host 0 is the primary (unless <paramref name="primaryUsable"/> is false: then there is none); the others are replicas with the given replay positions, eligible unless listed in <paramref name="ineligible"/>.</summary>
    public static BackendTopology Build(ulong[] replicaReplay, bool primaryUsable = true, int[]? ineligible = null)
    {
        var statuses = ImmutableArray.CreateBuilder<BackendStatus>();
        var readers = ImmutableArray.CreateBuilder<int>();
        statuses.Add(new BackendStatus
        {
            Index = 0,
            Endpoint = Host(0),
            Role = primaryUsable ? BackendRole.Primary : BackendRole.Unknown,
            Breaker = primaryUsable ? BreakerState.Closed : BreakerState.Open,
            Eligibility = ReadEligibility.NotReplica,
            Lsn = new Lsn(10_000),
        });
        for (var i = 0; i < replicaReplay.Length; i++)
        {
            var index = i + 1;
            var eligible = ineligible is null || Array.IndexOf(ineligible, index) < 0;
            statuses.Add(new BackendStatus
            {
                Index = index,
                Endpoint = Host(index),
                Role = BackendRole.Replica,
                Breaker = BreakerState.Closed,
                Eligibility = eligible ? ReadEligibility.Eligible : ReadEligibility.LagBytes,
                Lsn = new Lsn(replicaReplay[i]),
            });
            if (eligible)
                readers.Add(index);
        }
        return new BackendTopology(1, 1, primaryUsable ? 0 : -1, statuses.ToImmutable(), readers.ToImmutable(), DateTimeOffset.UnixEpoch);
    }
}
