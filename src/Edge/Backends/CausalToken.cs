using System.Collections.Concurrent;

namespace MProxy.Edge.Backends;

/// <summary>
/// A client's read-your-writes token: a WAL position of the primary taken after the client's last
/// committed write, and when that commit happened (a <see cref="TimeProvider.GetTimestamp"/> value,
/// for the stickiness window). <see cref="None"/> until the client writes.
/// </summary>
/// <remarks>An immutable value: sessions keep theirs in a field; <see cref="CausalTokenTable"/> shares them per tenant.</remarks>
public readonly record struct CausalToken(Lsn Lsn, long WrittenAt)
{
    public static readonly CausalToken None;

    public bool IsNone => Lsn.IsNone && WrittenAt == 0;

    /// <summary>Whether a replica that replayed up to <paramref name="replay"/> shows everything this token stands for.</summary>
    public bool IsVisibleAt(Lsn replay) => replay >= Lsn;

    /// <summary>The later of two tokens, field by field (a write never moves a token back).</summary>
    public static CausalToken Max(CausalToken a, CausalToken b) =>
        new(Lsn.Max(a.Lsn, b.Lsn), Math.Max(a.WrittenAt, b.WrittenAt));

    /// <summary>This token advanced by a write that committed at <paramref name="writtenAt"/> and left the primary at <paramref name="lsn"/>.</summary>
    public CausalToken After(Lsn lsn, long writtenAt) => Max(this, new CausalToken(lsn, writtenAt));
}

/// <summary>
/// Read-your-writes tokens shared by all sessions of a key (a tenant, a user): a write on one
/// connection of an application is then seen by its reads on the others.
/// </summary>
/// <remarks>
/// Thread-safe. <see cref="Get"/> allocates nothing; <see cref="Advance"/> allocates a small box per
/// write and only ever moves a token forward (compare-and-swap).
/// </remarks>
public sealed class CausalTokenTable
{
    private readonly ConcurrentDictionary<string, Cell> _cells = new(StringComparer.Ordinal);

    public int Count => _cells.Count;

    public CausalToken Get(string key) =>
        _cells.TryGetValue(key, out var cell) ? Volatile.Read(ref cell.Current).Token : CausalToken.None;

    public void Advance(string key, CausalToken token)
    {
        var cell = _cells.GetOrAdd(key, static _ => new Cell());
        while (true)
        {
            var current = Volatile.Read(ref cell.Current);
            var next = CausalToken.Max(current.Token, token);
            if (next == current.Token || ReferenceEquals(Interlocked.CompareExchange(ref cell.Current, new Box(next), current), current))
                return;
        }
    }

    /// <summary>Drops keys whose last write is older than <paramref name="olderThan"/> (a timestamp), to bound memory; call it periodically.</summary>
    public void Prune(long olderThan)
    {
        foreach (var (key, cell) in _cells)
        {
            if (Volatile.Read(ref cell.Current).Token.WrittenAt >= olderThan || !_cells.TryRemove(new KeyValuePair<string, Cell>(key, cell)))
                continue;
            // A write that raced with the removal went into the removed cell: put it back.
            var token = Volatile.Read(ref cell.Current).Token;
            if (token.WrittenAt >= olderThan)
                Advance(key, token);
        }
    }

    private sealed class Cell
    {
        public Box Current = new(CausalToken.None);
    }

    private sealed record Box(CausalToken Token);
}
