using System.Buffers.Binary;
using System.Text;
using MProxy.Edge.Routing;

namespace MProxy.Edge.Protocols.Postgres;

/// <summary>How a statement was prepared by its client, and so how the edge prepares it on a server.</summary>
internal enum PgStatementFlavor
{
    /// <summary>An extended-protocol Parse: re-prepared with a Parse message.</summary>
    Protocol,

    /// <summary>An SQL-level <c>PREPARE name … AS …</c>: re-prepared with that statement.</summary>
    Sql,
}

/// <summary>
/// One distinct statement (query text and parameter types) as the edge prepares it on server
/// connections, under a server-side name the edge chose. Shared by every client that prepares the
/// same text; immutable but for <see cref="Generation"/>.
/// </summary>
internal sealed class PgStatement
{
    private int _generation;

    public PgStatement(long id, PgStatementFlavor flavor, byte[] query, byte[] parameterTypes, string? sqlTail)
    {
        Id = id;
        Flavor = flavor;
        ServerName = "mproxy_" + id.ToString(System.Globalization.CultureInfo.InvariantCulture);
        ServerNameBytes = Encoding.ASCII.GetBytes(ServerName);
        Query = query;
        ParameterTypes = parameterTypes;
        if (flavor == PgStatementFlavor.Protocol)
        {
            // 'P' length, name\0, query\0, parameter types (count and OIDs, as the client sent them).
            var length = 4 + ServerNameBytes.Length + 1 + query.Length + 1 + parameterTypes.Length;
            ParseMessage = new byte[1 + length];
            ParseMessage[0] = (byte)PgFrontendCode.Parse;
            BinaryPrimitives.WriteInt32BigEndian(ParseMessage.AsSpan(1), length);
            var offset = 5;
            ServerNameBytes.CopyTo(ParseMessage, offset);
            offset += ServerNameBytes.Length + 1;
            query.CopyTo(ParseMessage, offset);
            offset += query.Length + 1;
            parameterTypes.CopyTo(ParseMessage, offset);
        }
        else
        {
            PrepareSql = "PREPARE " + ServerName + sqlTail;
        }
        CloseMessage = new byte[1 + 4 + 1 + ServerNameBytes.Length + 1];
        CloseMessage[0] = (byte)PgFrontendCode.Close;
        BinaryPrimitives.WriteInt32BigEndian(CloseMessage.AsSpan(1), CloseMessage.Length - 1);
        CloseMessage[5] = (byte)'S';
        ServerNameBytes.CopyTo(CloseMessage, 6);
    }

    public long Id { get; }

    public PgStatementFlavor Flavor { get; }

    /// <summary>The name the edge prepares it under on servers (<c>mproxy_N</c>, never reused).</summary>
    public string ServerName { get; }

    public byte[] ServerNameBytes { get; }

    /// <summary>The query text as UTF-8, without its terminating NUL (for <see cref="PgStatementFlavor.Sql"/>: the text after the name).</summary>
    public byte[] Query { get; }

    /// <summary>The Parse message's parameter-type part: an int16 count and that many int32 OIDs.</summary>
    public byte[] ParameterTypes { get; }

    /// <summary>For <see cref="PgStatementFlavor.Protocol"/>: the whole Parse message under <see cref="ServerName"/>.</summary>
    public byte[]? ParseMessage { get; }

    /// <summary>For <see cref="PgStatementFlavor.Sql"/>: <c>PREPARE mproxy_N …</c>.</summary>
    public string? PrepareSql { get; }

    /// <summary>The Close message for <see cref="ServerName"/>.</summary>
    public byte[] CloseMessage { get; }

    /// <summary>
    /// Bumped when a server reports that the statement's cached plan went stale (the schema
    /// changed): every server connection then re-prepares it before its next use.
    /// </summary>
    public int Generation => Volatile.Read(ref _generation);

    public void Invalidate() => Interlocked.Increment(ref _generation);

    /// <summary>
    /// Some server accepted the statement's Parse: a later client's Parse of the same text can be
    /// answered by the edge without a server connection (it is prepared where it is used).
    /// </summary>
    public bool Validated { get; private set; }

    public void MarkValidated() => Validated = true;

    /// <summary>The statement's classification: what admission and routing need to know of its executions.</summary>
    public StatementInfo Info { get; init; }
}

/// <summary>
/// The distinct statements of one pool, interned by content so that clients preparing the same
/// text share one server-side statement. Bounded: past its capacity the oldest entries are
/// forgotten (clients keep the statements they hold; a later identical Parse gets a new entry).
/// Thread-safe.
/// </summary>
internal sealed class PgStatementCatalog(int capacity)
{
    private static long s_nextId;
    private readonly Lock _lock = new();
    private readonly Dictionary<ulong, List<PgStatement>> _byHash = [];
    private readonly Queue<(ulong Hash, PgStatement Statement)> _order = new();

    public int Count
    {
        get
        {
            lock (_lock)
                return _order.Count;
        }
    }

    /// <summary>The interned statement with this content, if any.</summary>
    public PgStatement? Find(PgStatementFlavor flavor, ReadOnlySpan<byte> query, ReadOnlySpan<byte> parameterTypes)
    {
        var hash = Hash(flavor, query, parameterTypes);
        lock (_lock)
        {
            if (_byHash.TryGetValue(hash, out var candidates))
                foreach (var candidate in candidates)
                    if (candidate.Flavor == flavor && query.SequenceEqual(candidate.Query) && parameterTypes.SequenceEqual(candidate.ParameterTypes))
                        return candidate;
        }
        return null;
    }

    public PgStatement Intern(PgStatementFlavor flavor, ReadOnlySpan<byte> query, ReadOnlySpan<byte> parameterTypes, Func<byte[], StatementInfo> classify)
    {
        if (Find(flavor, query, parameterTypes) is { } found)
            return found;
        var hash = Hash(flavor, query, parameterTypes);
        var queryBytes = query.ToArray();
        var statement = new PgStatement(
            Interlocked.Increment(ref s_nextId), flavor, queryBytes, parameterTypes.ToArray(),
            flavor == PgStatementFlavor.Sql ? Encoding.UTF8.GetString(queryBytes) : null)
        {
            Info = classify(queryBytes),
        };
        lock (_lock)
        {
            if (!_byHash.TryGetValue(hash, out var candidates))
                _byHash[hash] = candidates = [];
            foreach (var candidate in candidates)
                if (candidate.Flavor == flavor && query.SequenceEqual(candidate.Query) && parameterTypes.SequenceEqual(candidate.ParameterTypes))
                    return candidate; // another client interned it meanwhile
            candidates.Add(statement);
            _order.Enqueue((hash, statement));
            while (_order.Count > capacity && _order.TryDequeue(out var oldest))
            {
                var list = _byHash[oldest.Hash];
                list.Remove(oldest.Statement);
                if (list.Count == 0)
                    _byHash.Remove(oldest.Hash);
            }
        }
        return statement;
    }

    private static ulong Hash(PgStatementFlavor flavor, ReadOnlySpan<byte> query, ReadOnlySpan<byte> parameterTypes)
    {
        var hash = Fnv1a64.Append(Fnv1a64.OffsetBasis, (byte)flavor);
        hash = Fnv1a64.Append(hash, query);
        return Fnv1a64.Append(hash, parameterTypes);
    }
}

/// <summary>
/// The statements prepared on one server connection, least recently used first, with the
/// generation each was prepared at. Guarded by the connection's lock.
/// </summary>
internal sealed class PgServerStatements(int capacity)
{
    private readonly Dictionary<PgStatement, LinkedListNode<(PgStatement Statement, int Generation)>> _nodes = new(ReferenceEqualityComparer.Instance);
    private readonly LinkedList<(PgStatement Statement, int Generation)> _lru = new();

    public int Count => _nodes.Count;

    public int Capacity { get; } = capacity;

    /// <summary>Whether the statement is prepared here at its current generation (and marks it used).</summary>
    public bool TryUse(PgStatement statement, out bool stale)
    {
        if (!_nodes.TryGetValue(statement, out var node))
        {
            stale = false;
            return false;
        }
        stale = node.Value.Generation != statement.Generation;
        if (stale)
            return false;
        _lru.Remove(node);
        _lru.AddLast(node);
        return true;
    }

    public bool Contains(PgStatement statement) => _nodes.ContainsKey(statement);

    /// <summary>Records the statement as prepared (now, at its current generation).</summary>
    public void Add(PgStatement statement)
    {
        if (_nodes.TryGetValue(statement, out var node))
        {
            _lru.Remove(node);
            node.Value = (statement, statement.Generation);
            _lru.AddLast(node);
            return;
        }
        _nodes[statement] = _lru.AddLast((statement, statement.Generation));
    }

    /// <summary>Records the statement as prepared at <paramref name="generation"/> (an eviction that did not happen).</summary>
    public void Restore(PgStatement statement, int generation)
    {
        Remove(statement);
        _nodes[statement] = _lru.AddFirst((statement, generation));
    }

    public void Remove(PgStatement statement)
    {
        if (_nodes.Remove(statement, out var node))
            _lru.Remove(node);
    }

    /// <summary>The generation the statement is prepared at here, or null.</summary>
    public int? GenerationOf(PgStatement statement) => _nodes.TryGetValue(statement, out var node) ? node.Value.Generation : null;

    /// <summary>The least recently used statement, to close when the set is full; null when it is not.</summary>
    public PgStatement? EvictionCandidate(PgStatement keep) =>
        _nodes.Count < Capacity ? null : _lru.First is { } first && !ReferenceEquals(first.Value.Statement, keep) ? first.Value.Statement : _lru.First?.Next?.Value.Statement;

    public void Clear()
    {
        _nodes.Clear();
        _lru.Clear();
    }
}

/// <summary>A client's name for a statement.</summary>
internal sealed class PgClientStatement(byte[] name, PgStatement statement)
{
    public byte[] Name { get; } = name;

    public PgStatement Statement { get; } = statement;

    internal PgClientStatement? Next { get; set; }
}

/// <summary>
/// The named statements of one client, by the names it chose (two clients may both use
/// <c>S_1</c> for different queries). Lookups by the name's bytes do not allocate. Bounded.
/// Accessed by the client's loop and, to forget a statement whose Parse failed, by the pump:
/// guarded by its own lock.
/// </summary>
internal sealed class PgClientStatements(int capacity)
{
    private readonly Lock _lock = new();
    private readonly Dictionary<ulong, PgClientStatement> _byHash = [];
    private int _count;

    public int Count
    {
        get
        {
            lock (_lock)
                return _count;
        }
    }

    public int Capacity { get; } = capacity;

    public PgClientStatement? Find(ReadOnlySpan<byte> name)
    {
        var hash = Fnv1a64.Hash(name);
        lock (_lock)
        {
            for (var entry = _byHash.GetValueOrDefault(hash); entry is not null; entry = entry.Next)
                if (name.SequenceEqual(entry.Name))
                    return entry;
        }
        return null;
    }

    /// <summary>Adds a name; false when the client is at its limit.</summary>
    public bool TryAdd(PgClientStatement statement)
    {
        var hash = Fnv1a64.Hash(statement.Name);
        lock (_lock)
        {
            if (_count >= Capacity)
                return false;
            statement.Next = _byHash.GetValueOrDefault(hash);
            _byHash[hash] = statement;
            _count++;
            return true;
        }
    }

    /// <summary>Removes this entry (if it is still registered).</summary>
    public bool Remove(PgClientStatement statement)
    {
        var hash = Fnv1a64.Hash(statement.Name);
        lock (_lock)
        {
            PgClientStatement? previous = null;
            for (var entry = _byHash.GetValueOrDefault(hash); entry is not null; previous = entry, entry = entry.Next)
            {
                if (!ReferenceEquals(entry, statement))
                    continue;
                if (previous is null)
                {
                    if (entry.Next is null)
                        _byHash.Remove(hash);
                    else
                        _byHash[hash] = entry.Next;
                }
                else
                {
                    previous.Next = entry.Next;
                }
                _count--;
                return true;
            }
            return false;
        }
    }

    public void Clear()
    {
        lock (_lock)
        {
            _byHash.Clear();
            _count = 0;
        }
    }
}
