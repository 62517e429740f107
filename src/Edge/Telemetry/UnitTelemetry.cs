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
/// Thread-safe: the session's loop begins and sends units while the relay completes them; a private
/// lock (uncontended but for pipelining) orders the two. No allocation per unit unless it is traced.
/// A unit begun while the previous one is still open (pipelining) supersedes it: the previous one
/// is counted but its latency is not recorded.
/// </remarks>
internal sealed class UnitTelemetry : IDisposable
{
    private static readonly string[] TypeLabels = ["unknown", "read", "write"];

    private readonly EdgeTelemetry _edge;
    private readonly QueryCell _cell;
    private readonly Lock _lock = new();
    private int _unit;
    private bool _open;
    private bool _sent;
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

    /// <summary>
    /// Unit <paramref name="unit"/> starts (before admission). <paramref name="classified"/> says
    /// whether <paramref name="info"/> is the classifier's (otherwise the type is unknown).
    /// </summary>
    public void Begin(int unit, in StatementInfo info, bool classified)
    {
        var type = !classified ? UnitType.Unknown : info.IsWrite ? UnitType.Write : UnitType.Read;
        var now = _edge.Time.GetTimestamp();
        Activity? superseded;
        lock (_lock)
        {
            superseded = _open ? _activity : null;
            _unit = unit;
            _open = true;
            _sent = false;
            _startedAt = now;
            _type = type;
            _replica = false;
            _fingerprint = info.Fingerprint;
            _queueWait = TimeSpan.Zero;
            _bytesToClient = 0;
            _bytesToServer = 0;
            _activity = null;
        }
        superseded?.Stop();
        if (_edge.Source.HasListeners())
            StartActivity(unit, info.Hints.TraceParent);
    }

    private void StartActivity(int unit, string? traceParent)
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
        lock (_lock)
        {
            if (_open && _unit == unit)
            {
                _activity = activity;
                return;
            }
        }
        activity.Stop();
    }

    /// <summary>The unit got a scheduler slot after waiting <paramref name="waited"/> in <paramref name="pool"/>'s scheduler.</summary>
    public void SlotGranted(string pool, Priority priority, TimeSpan waited)
    {
        _edge.SchedulerWait.Record(waited.TotalSeconds,
            new KeyValuePair<string, object?>("pool", pool),
            new KeyValuePair<string, object?>("priority", EdgeTelemetry.PriorityLabels[(int)priority]));
        lock (_lock)
            _queueWait += waited;
    }

    /// <summary>The edge answered a BEGIN itself (deferred BEGIN): not a request unit, counted on its own.</summary>
    public void DeferredBegin() => _cell.CountDeferredBegin();

    /// <summary>The unit's first message goes to a server: it counts as a query to that destination.</summary>
    public void Sent(bool primary, MProxy.Edge.Configuration.HostPort host)
    {
        Activity? activity;
        UnitType type;
        TimeSpan queueWait;
        lock (_lock)
        {
            if (!_open || _sent)
                return;
            _sent = true;
            _replica = !primary;
            type = _type;
            activity = _activity;
            queueWait = _queueWait;
        }
        _cell.CountQuery(type, !primary);
        if (activity is { IsAllDataRequested: true })
        {
            activity.SetTag("server.address", host.Host);
            activity.SetTag("server.port", host.Port);
            activity.SetTag("mproxy.destination", primary ? "primary" : "replica");
            activity.SetTag("mproxy.queue_wait_ms", queueWait.TotalMilliseconds);
        }
    }

    /// <summary>The edge refused the unit before it reached a server (budget, shed, pool timeout, routing).</summary>
    public void Refused(string sqlState)
    {
        Activity? activity;
        lock (_lock)
        {
            if (!_open || _sent)
                return;
            _open = false;
            activity = _activity;
            _activity = null;
        }
        if (activity is null)
            return;
        activity.SetTag("error.type", sqlState);
        activity.SetStatus(ActivityStatusCode.Error, sqlState);
        activity.Stop();
    }

    /// <summary>Bytes relayed: server → client (<paramref name="toClient"/>) and client → server (<paramref name="toServer"/>).</summary>
    /// <remarks>
    /// The unit's own count feeds only its span's tags: an untraced unit skips the lock. The span is
    /// stored before the unit's first message goes to the server, so it is visible by the time any
    /// of its bytes are relayed.
    /// </remarks>
    public void AddBytes(long toClient, long toServer)
    {
        _cell.AddBytes(toClient, toServer);
        if (Volatile.Read(ref _activity) is null)
            return;
        lock (_lock)
        {
            _bytesToClient += toClient;
            _bytesToServer += toServer;
        }
    }

    /// <summary>Unit <paramref name="unit"/> finished (its ReadyForQuery was relayed), costing <paramref name="ru"/> (0 without QoS).</summary>
    public void Complete(int unit, double ru)
    {
        Activity? activity;
        UnitType type;
        bool replica;
        ulong fingerprint;
        long startedAt, toClient, toServer;
        lock (_lock)
        {
            if (!_open || unit != _unit || !_sent)
                return;
            _open = false;
            activity = _activity;
            _activity = null;
            type = _type;
            replica = _replica;
            fingerprint = _fingerprint;
            startedAt = _startedAt;
            toClient = _bytesToClient;
            toServer = _bytesToServer;
        }
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
        if (activity is null)
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
        Activity? activity;
        lock (_lock)
        {
            _open = false;
            activity = _activity;
            _activity = null;
        }
        activity?.Stop();
    }
}
