namespace MProxy.Edge.Telemetry;

/// <summary>
/// A fixed set of 64-bit counters that many threads add to and few read: one copy (stripe) of the
/// set per processor, up to <see cref="MaxStripes"/>, each on cache lines of its own, summed when
/// read. The epoll loops of the edge each bump the same (database, tenant) counters and latency
/// series for every request unit; one shared copy made every update a cache miss on the other core.
/// </summary>
/// <remarks>
/// Updates are interlocked (a thread that migrates, or two threads on one processor, may share a
/// stripe) but stay on the updating core's own lines. A read sums the stripes without stopping
/// writers, so two slots read together may be a few updates apart. Allocation-free after
/// construction.
/// </remarks>
internal sealed class StripedCounters
{
    /// <summary>The most stripes a set has: beyond this, processors share them.</summary>
    public const int MaxStripes = 8;

    private const int LineLongs = 8; // a 64-byte cache line

    private static readonly int StripeMask = (int)Math.Min(MaxStripes, System.Numerics.BitOperations.RoundUpToPowerOf2((uint)Environment.ProcessorCount)) - 1;

    // Stripe i's slots start at LineLongs + i * _stride: a line of padding first (the array's length
    // shares the first line with its header, and bound checks read it), and a line between stripes.
    private readonly long[] _slots;
    private readonly int _stride;

    public StripedCounters(int count)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(count);
        Count = count;
        _stride = ((count + LineLongs - 1) / LineLongs * LineLongs) + LineLongs;
        _slots = new long[LineLongs + ((StripeMask + 1) * _stride)];
    }

    /// <summary>The number of counters.</summary>
    public int Count { get; }

    /// <summary>Adds <paramref name="value"/> to counter <paramref name="slot"/>.</summary>
    public void Add(int slot, long value) => Interlocked.Add(ref _slots[Local() + Checked(slot)], value);

    /// <summary>Adds one to counter <paramref name="slot"/>.</summary>
    public void Increment(int slot) => Interlocked.Increment(ref _slots[Local() + Checked(slot)]);

    /// <summary>Adds <paramref name="value"/> to counter <paramref name="slot"/> kept as a double (read it with <see cref="ReadDouble"/>).</summary>
    public void AddDouble(int slot, double value)
    {
        ref var cell = ref _slots[Local() + Checked(slot)];
        var seen = Volatile.Read(ref cell);
        while (true)
        {
            var next = BitConverter.DoubleToInt64Bits(BitConverter.Int64BitsToDouble(seen) + value);
            var found = Interlocked.CompareExchange(ref cell, next, seen);
            if (found == seen)
                return;
            seen = found;
        }
    }

    /// <summary>The total of counter <paramref name="slot"/> over every stripe.</summary>
    public long Read(int slot)
    {
        Checked(slot);
        long total = 0;
        for (var at = LineLongs + slot; at < _slots.Length; at += _stride)
            total += Volatile.Read(ref _slots[at]);
        return total;
    }

    /// <summary>The total of a double counter (<see cref="AddDouble"/>) over every stripe.</summary>
    public double ReadDouble(int slot)
    {
        Checked(slot);
        var total = 0.0;
        for (var at = LineLongs + slot; at < _slots.Length; at += _stride)
            total += BitConverter.Int64BitsToDouble(Volatile.Read(ref _slots[at]));
        return total;
    }

    private int Local() => LineLongs + ((Thread.GetCurrentProcessorId() & StripeMask) * _stride);

    private int Checked(int slot) => (uint)slot < (uint)Count ? slot : throw new ArgumentOutOfRangeException(nameof(slot));
}
