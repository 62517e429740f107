using System.Collections.Concurrent;

namespace MProxy.Edge.Telemetry;

/// <summary>The type label of a request unit: what the classifier made of it.</summary>
internal enum UnitType
{
    /// <summary>Not classified: the edge classifies only with QoS or routing on.</summary>
    Unknown = 0,
    Read = 1,
    Write = 2,
}

/// <summary>
/// Query, byte and deferred-BEGIN counters of one (database, tenant): resolved once per client session, then bumped
/// with one interlocked add per request unit or batch, on the updating processor's own stripe
/// (<see cref="StripedCounters"/>: the sessions of one cell run on every loop).
/// </summary>
internal sealed class QueryCell(string database, string tenant)
{
    private const int BytesToClientSlot = 6;
    private const int BytesToServerSlot = 7;
    private const int DeferredBeginsSlot = 8;

    // Slots 0-5: queries by (type, replica); 6 and 7: bytes to the client and to the server; 8: deferred BEGINs.
    private readonly StripedCounters _counters = new(9);

    public string Database { get; } = database;

    public string Tenant { get; } = tenant;

    public long BytesToClient => _counters.Read(BytesToClientSlot);

    public long BytesToServer => _counters.Read(BytesToServerSlot);

    public long Queries(UnitType type, bool replica) => _counters.Read(Index(type, replica));

    /// <summary>BEGINs the edge answered itself (deferred to the transaction's first statement).</summary>
    public long DeferredBegins => _counters.Read(DeferredBeginsSlot);

    public void CountDeferredBegin() => _counters.Increment(DeferredBeginsSlot);

    public void CountQuery(UnitType type, bool replica) => _counters.Increment(Index(type, replica));

    public void AddBytes(long toClient, long toServer)
    {
        if (toClient != 0)
            _counters.Add(BytesToClientSlot, toClient);
        if (toServer != 0)
            _counters.Add(BytesToServerSlot, toServer);
    }

    private static int Index(UnitType type, bool replica) => ((int)type * 2) + (replica ? 1 : 0);
}

/// <summary>
/// Every <see cref="QueryCell"/>, keyed by (database, tenant). Tenants are bounded by QoS
/// (<c>qos.maxTenants</c>) and databases by the configuration; past <see cref="MaxCells"/> new
/// pairs share one overflow cell, so the label set cannot grow without bound.
/// </summary>
internal sealed class QueryCounters
{
    public const int MaxCells = 20_000;
    public const string OverflowTenant = "(overflow)";

    private readonly ConcurrentDictionary<(string Database, string Tenant), QueryCell> _cells = new();
    private readonly QueryCell _overflow = new("(overflow)", OverflowTenant);

    public QueryCell CellFor(string database, string tenant)
    {
        if (_cells.TryGetValue((database, tenant), out var cell))
            return cell;
        if (_cells.Count >= MaxCells)
            return _overflow;
        return _cells.GetOrAdd((database, tenant), static key => new QueryCell(key.Database, key.Tenant));
    }

    /// <summary>Every cell (a snapshot), the overflow cell last when it was used.</summary>
    public List<QueryCell> Snapshot()
    {
        var cells = new List<QueryCell>(_cells.Values);
        if (_overflow.Queries(UnitType.Unknown, false) + _overflow.Queries(UnitType.Read, false) + _overflow.Queries(UnitType.Write, false)
            + _overflow.Queries(UnitType.Unknown, true) + _overflow.Queries(UnitType.Read, true) + _overflow.Queries(UnitType.Write, true) > 0)
            cells.Add(_overflow);
        return cells;
    }
}
