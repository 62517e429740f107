namespace MProxy.Edge.Backends;

/// <summary>
/// Power-of-Two-Choices over the replicas that qualify: two distinct candidates drawn at random
/// (seeded), the one with the lower score wins. Score = <c>(in-flight + 1) × latency</c>, where
/// latency is a time-decaying average (EWMA, time constant <see cref="BackendsConfig.LatencyDecay"/>)
/// of the durations callers report. Callers bracket every query they send to any backend with
/// <see cref="Start"/> and <see cref="End"/>.
/// </summary>
/// <remarks>
/// <para>Thread-safe. <see cref="Pick"/>, <see cref="Start"/> and <see cref="End"/> allocate nothing.
/// In-flight counts are updated with interlocked operations; each backend's average is updated under
/// its own small lock and read without one; the shared <see cref="Random"/> is used under a lock for
/// two draws. Draws happen in call order, so a single-threaded simulation replays exactly.</para>
/// <para>A backend with no latency sample yet borrows the other candidate's average (or both count as
/// equal), so a new replica is neither starved nor flooded: in-flight counts decide.</para>
/// </remarks>
public sealed class ReplicaBalancer
{
    private readonly BackendLoad[] _loads;
    private readonly TimeProvider _time;
    private readonly Random _random;
    private readonly Lock _randomLock = new();
    private readonly double _decayTimestampUnits;

    public ReplicaBalancer(int backendCount, TimeSpan latencyDecay, TimeProvider time, Random random)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(backendCount);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(latencyDecay, TimeSpan.Zero);
        _loads = new BackendLoad[backendCount];
        for (var i = 0; i < backendCount; i++)
            _loads[i] = new BackendLoad();
        _time = time;
        _random = random;
        _decayTimestampUnits = latencyDecay.TotalSeconds * time.TimestampFrequency;
    }

    public int BackendCount => _loads.Length;

    /// <summary>A query was sent to <paramref name="backend"/>; returns the start timestamp to pass to <see cref="End"/>.</summary>
    public long Start(int backend)
    {
        Interlocked.Increment(ref _loads[backend].InFlight);
        return _time.GetTimestamp();
    }

    /// <summary>The query started at <paramref name="startedAt"/> finished (successfully or not): its duration feeds the average.</summary>
    public void End(int backend, long startedAt)
    {
        var load = _loads[backend];
        Interlocked.Decrement(ref load.InFlight);
        var now = _time.GetTimestamp();
        var latencyMs = _time.GetElapsedTime(startedAt, now).TotalMilliseconds;
        lock (load)
        {
            var previous = load.LatencyMs;
            if (previous < 0)
            {
                Volatile.Write(ref load.LatencyMs, latencyMs);
            }
            else
            {
                var elapsed = Math.Max(0, now - load.UpdatedAt);
                var keep = Math.Exp(-elapsed / _decayTimestampUnits);
                Volatile.Write(ref load.LatencyMs, (previous * keep) + (latencyMs * (1 - keep)));
            }
            load.UpdatedAt = now;
        }
    }

    /// <summary>Queries in flight on <paramref name="backend"/>.</summary>
    public int InFlight(int backend) => Volatile.Read(ref _loads[backend].InFlight);

    /// <summary>The decaying latency average of <paramref name="backend"/> in milliseconds; null before its first sample.</summary>
    public double? LatencyMs(int backend)
    {
        var value = Volatile.Read(ref _loads[backend].LatencyMs);
        return value < 0 ? null : value;
    }

    /// <summary>
    /// Picks a replica among <see cref="BackendTopology.ReadReplicas"/> whose replay position is at
    /// least <paramref name="minimumReplay"/> (<see cref="Lsn.None"/>: no condition). Returns its index,
    /// or −1 when none qualifies.
    /// </summary>
    public int Pick(BackendTopology topology, Lsn minimumReplay)
    {
        var replicas = topology.ReadReplicas;
        var backends = topology.Backends;
        int count;
        if (minimumReplay.IsNone)
        {
            count = replicas.Length;
        }
        else
        {
            count = 0;
            foreach (var index in replicas)
                if (backends[index].Lsn >= minimumReplay)
                    count++;
        }
        if (count == 0)
            return -1;
        if (count == 1)
            return Nth(topology, minimumReplay, 0);

        int first, second;
        lock (_randomLock)
        {
            first = _random.Next(count);
            second = _random.Next(count - 1);
        }
        if (second >= first)
            second++;
        var a = Nth(topology, minimumReplay, first);
        var b = Nth(topology, minimumReplay, second);
        return Score(b, a) < Score(a, b) ? b : a;
    }

    /// <summary>The score of <paramref name="backend"/> when compared with <paramref name="other"/> (lower is better).</summary>
    private double Score(int backend, int other)
    {
        var latency = Volatile.Read(ref _loads[backend].LatencyMs);
        if (latency < 0)
        {
            latency = Volatile.Read(ref _loads[other].LatencyMs);
            if (latency < 0)
                latency = 1;
        }
        return (Math.Max(0, Volatile.Read(ref _loads[backend].InFlight)) + 1) * Math.Max(latency, 0.001);
    }

    private static int Nth(BackendTopology topology, Lsn minimumReplay, int n)
    {
        var replicas = topology.ReadReplicas;
        if (minimumReplay.IsNone)
            return replicas[n];
        var backends = topology.Backends;
        foreach (var index in replicas)
        {
            if (backends[index].Lsn >= minimumReplay && n-- == 0)
                return index;
        }
        return -1; // not reached: n < count
    }

    private sealed class BackendLoad
    {
        public int InFlight;
        public double LatencyMs = -1;
        public long UpdatedAt;
    }
}
