using System.Diagnostics;
using MProxy.Abstractions;
using MProxy.Edge.Routing;

namespace MProxy.Edge.Telemetry;

/// <summary>
/// The telemetry of one client session's request units (a simple Query, or an extended-protocol run
/// up to its Sync): counts each unit sent, records its latency, the scheduler wait and bytes, and
/// — when sampled — one span per unit, parented to the client's <c>traceparent</c> hint. Protocol
/// adapters call, per unit:
/// <code>Begin → (SlotGranted) → Sent | Refused → AddBytes … → Complete</code>
/// </summary>
/// <remarks>
/// Thread-safe without a lock: the session's flow begins, sends and refuses units (one at a time),
/// the relay completes them, possibly on another loop's thread. One state word — the unit's number,
/// whether it is open and whether it was sent — orders the two, like a sequence lock: the session
/// writes a unit's fields before it publishes the unit as open, and <see cref="Complete"/> reads
/// them, then closes the unit with one compare-and-swap that fails if the session took the word
/// over in between (a pipelined unit begun before the previous one completed supersedes it: the
/// previous one is counted but its latency is not recorded). A unit's span, when it is traced, is
/// stopped by whoever takes it out of its slot. No allocation per unit unless it is traced.
/// </remarks>
internal sealed class UnitTelemetry : IDisposable
{
    private static readonly string[] TypeLabels = ["unknown", "read", "write"];

    // The state word: the unit's number in the low 32 bits, then these flags. Zero: no unit open.
    private const long OpenFlag = 1L << 32;
    private const long SentFlag = 1L << 33;

    private readonly EdgeTelemetry _edge;
    private readonly QueryCell _cell;
    private long _state;
    // The open unit's fields: written by the session's flow while no unit is open (or after taking
    // an open one over), read by Complete before its compare-and-swap validates them.
    private long _startedAt;
    private UnitType _type;
    private bool _replica;
    private ulong _fingerprint;
    private TimeSpan _queueWait;
    private long _bytesToClient;
    private long _bytesToServer;
    private Activity? _activity;

    internal UnitTelemetry(EdgeTelemetry edge, string protocol, string database, string tenant, QueryCell cell)
    {
        _edge = edge;
        Protocol = protocol;
        Database = database;
        Tenant = tenant;
        _cell = cell;
    }

    public string Protocol { get; }

    public string Database { get; }

    public string Tenant { get; }

    private static long Opened(int unit) => (uint)unit | OpenFlag;

    /// <summary>
    /// Unit <paramref name="unit"/> starts (before admission). <paramref name="classified"/> says
    /// whether <paramref name="info"/> is the classifier's (otherwise the type is unknown).
    /// </summary>
    public void Begin(int unit, in StatementInfo info, bool classified)
    {
        var type = !classified ? UnitType.Unknown : info.IsWrite ? UnitType.Write : UnitType.Read;
        var now = _edge.Time.GetTimestamp();
        // A unit still open is superseded: taking the word over (a full fence, before the fields
        // change) makes a Complete of it that is reading them fail its compare-and-swap.
        if ((Volatile.Read(ref _state) & OpenFlag) != 0)
            Interlocked.Exchange(ref _state, 0);
        _startedAt = now;
        _type = type;
        _replica = false;
        _fingerprint = info.Fingerprint;
        _queueWait = TimeSpan.Zero;
        _bytesToClient = 0;
        _bytesToServer = 0;
        Volatile.Write(ref _state, Opened(unit));
        // A span left in the slot is a superseded unit's (or, rarely, one whose Complete has not
        // taken it yet): whoever takes it out stops it.
        if (Volatile.Read(ref _activity) is not null)
            Interlocked.Exchange(ref _activity, null)?.Stop();
        if (_edge.Source.HasListeners())
            StartActivity(info.Hints.TraceParent);
    }

    private void StartActivity(string? traceParent)
    {
        ActivityContext parent = default;
        if (traceParent is not null)
            ActivityContext.TryParse(traceParent, null, isRemote: true, out parent);
        var ambient = Activity.Current;
        Activity.Current = null;
        var activity = _edge.Source.StartActivity(EdgeTelemetry.SpanName, ActivityKind.Server, parent);
        Activity.Current = ambient;
        if (activity is null)
            return;
        if (activity.IsAllDataRequested)
        {
            activity.SetTag("db.system", Protocol);
            activity.SetTag("db.namespace", Database);
            activity.SetTag("mproxy.tenant", Tenant);
            activity.SetTag("mproxy.type", TypeLabels[(int)_type]);
            if (_fingerprint != 0)
                activity.SetTag("mproxy.fingerprint", TopFingerprints.Format(_fingerprint));
        }
        // Nothing can close the unit meanwhile: Complete needs it sent, which is this flow's next step.
        Volatile.Write(ref _activity, activity);
    }

    /// <summary>The unit got a scheduler slot after waiting <paramref name="waited"/> in <paramref name="pool"/>'s scheduler.</summary>
    public void SlotGranted(string pool, Priority priority, TimeSpan waited)
    {
        _edge.SchedulerWait.Record(waited.TotalSeconds,
            new KeyValuePair<string, object?>("pool", pool),
            new KeyValuePair<string, object?>("priority", EdgeTelemetry.PriorityLabels[(int)priority]));
        _queueWait += waited;
    }

    /// <summary>The edge answered a BEGIN itself (deferred BEGIN): not a request unit, counted on its own.</summary>
    public void DeferredBegin() => _cell.CountDeferredBegin();

    /// <summary>The unit's first message goes to a server: it counts as a query to that destination.</summary>
    public void Sent(bool primary, MProxy.Edge.Configuration.HostPort host)
    {
        // Only this flow changes a unit that is open and not sent (Complete needs it sent).
        var state = Volatile.Read(ref _state);
        if ((state & (OpenFlag | SentFlag)) != OpenFlag)
            return;
        _replica = !primary;
        Volatile.Write(ref _state, state | SentFlag);
        _cell.CountQuery(_type, !primary);
        if (Volatile.Read(ref _activity) is { IsAllDataRequested: true } activity)
        {
            activity.SetTag("server.address", host.Host);
            activity.SetTag("server.port", host.Port);
            activity.SetTag("mproxy.destination", primary ? "primary" : "replica");
            activity.SetTag("mproxy.queue_wait_ms", _queueWait.TotalMilliseconds);
        }
    }

    /// <summary>The edge refused the unit before it reached a server (budget, shed, pool timeout, routing).</summary>
    public void Refused(string sqlState)
    {
        var state = Volatile.Read(ref _state);
        if ((state & (OpenFlag | SentFlag)) != OpenFlag)
            return;
        Volatile.Write(ref _state, 0);
        if (Volatile.Read(ref _activity) is null || Interlocked.Exchange(ref _activity, null) is not { } activity)
            return;
        activity.SetTag("error.type", sqlState);
        activity.SetStatus(ActivityStatusCode.Error, sqlState);
        activity.Stop();
    }

    /// <summary>Bytes relayed: server → client (<paramref name="toClient"/>) and client → server (<paramref name="toServer"/>).</summary>
    /// <remarks>
    /// The unit's own count feeds only its span's tags: an untraced unit skips it. The span is
    /// stored before the unit's first message goes to the server, so it is visible by the time any
    /// of its bytes are relayed.
    /// </remarks>
    public void AddBytes(long toClient, long toServer)
    {
        _cell.AddBytes(toClient, toServer);
        if (Volatile.Read(ref _activity) is null)
            return;
        Interlocked.Add(ref _bytesToClient, toClient);
        Interlocked.Add(ref _bytesToServer, toServer);
    }

    /// <summary>Unit <paramref name="unit"/> finished (its ReadyForQuery was relayed), costing <paramref name="ru"/> (0 without QoS).</summary>
    public void Complete(int unit, double ru)
    {
        var state = Volatile.Read(ref _state);
        if (state != (Opened(unit) | SentFlag))
            return;
        var type = _type;
        var replica = _replica;
        var fingerprint = _fingerprint;
        var startedAt = _startedAt;
        var toClient = Volatile.Read(ref _bytesToClient);
        var toServer = Volatile.Read(ref _bytesToServer);
        var activity = Volatile.Read(ref _activity);
        // Fails if the session took the word over (a superseding unit, the session's end) since it was read.
        if (Interlocked.CompareExchange(ref _state, 0, state) != state)
            return;
        var seconds = _edge.Time.GetElapsedTime(startedAt).TotalSeconds;
        // The fixed-arity overloads: a TagList is eight tags wide, and building and copying two of
        // them cost about 30 ns per unit (bench/StatementPath).
        _edge.QueryDuration.Record(seconds,
            new KeyValuePair<string, object?>("database", Database),
            new KeyValuePair<string, object?>("type", TypeLabels[(int)type]),
            new KeyValuePair<string, object?>("destination", replica ? "replica" : "primary"));
        _edge.Fingerprints.Resolve(Tenant, fingerprint, out var tenantLabel, out var fingerprintLabel);
        _edge.FingerprintDuration.Record(seconds,
            new KeyValuePair<string, object?>("tenant", tenantLabel),
            new KeyValuePair<string, object?>("fingerprint", fingerprintLabel));
        if (activity is null || Interlocked.CompareExchange(ref _activity, null, activity) != activity)
            return;
        if (activity.IsAllDataRequested)
        {
            activity.SetTag("mproxy.ru", ru);
            activity.SetTag("mproxy.bytes_to_client", toClient);
            activity.SetTag("mproxy.bytes_to_server", toServer);
        }
        activity.Stop();
    }

    /// <summary>The session ended: a unit still open ends with it (its span is closed, its latency not recorded).</summary>
    public void Dispose()
    {
        if ((Volatile.Read(ref _state) & OpenFlag) != 0)
            Interlocked.Exchange(ref _state, 0);
        Interlocked.Exchange(ref _activity, null)?.Stop();
    }
}
