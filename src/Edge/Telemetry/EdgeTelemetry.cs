using System.Diagnostics;
using System.Diagnostics.Metrics;
using MProxy.Abstractions;

namespace MProxy.Edge.Telemetry;

/// <summary>
/// The edge's instruments that the query path records into, created once: the meter and activity
/// source, the latency histograms, the per-(database, tenant) query counters and the top-N
/// fingerprint labels. Everything else is read from the components' own statistics by observable
/// instruments (<see cref="EdgeMetrics"/>). The Prometheus endpoint and the OTLP exporter read the
/// same instruments.
/// </summary>
/// <remarks>
/// Nothing here allocates per query: histograms are recorded with label strings that already exist
/// (through the instruments' fixed-arity overloads, cheaper than a <see cref="TagList"/>), counters
/// are interlocked fields of a cell resolved at login, and a span is created only when a trace
/// listener samples the unit.
/// </remarks>
internal sealed class EdgeTelemetry : IDisposable
{
    public const string MeterName = "MProxy.Edge";
    public const string ActivitySourceName = "MProxy.Edge";
    public const string SpanName = "mproxy.query";

    /// <summary>Latency buckets in seconds (0.5 ms … 60 s): p50/p95/p99 are derivable with histogram_quantile.</summary>
    public static readonly IReadOnlyList<double> DurationBuckets =
        [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

    /// <summary>Label values of <see cref="Priority"/>, indexed by its value.</summary>
    public static readonly string[] PriorityLabels = ["high", "medium", "low"];

    private volatile TelemetryConfig _config;

    public EdgeTelemetry(TelemetryConfig config, TimeProvider time)
    {
        _config = config;
        Time = time;
        Meter = new Meter(new MeterOptions(MeterName) { Version = typeof(EdgeTelemetry).Assembly.GetName().Version?.ToString() });
        Source = new ActivitySource(ActivitySourceName);
        var advice = new InstrumentAdvice<double> { HistogramBucketBoundaries = DurationBuckets };
        QueryDuration = Meter.CreateHistogram("mproxy.query.duration", "s",
            "Time from a request unit's first message at the edge to its last response (queueing included), by database, type and destination.",
            tags: null, advice);
        FingerprintDuration = Meter.CreateHistogram("mproxy.fingerprint.duration", "s",
            "Request unit latency of the heaviest fingerprints by RU (tenant, fingerprint); all others aggregated as tenant=\"*\", fingerprint=\"other\".",
            tags: null, advice);
        SchedulerWait = Meter.CreateHistogram("mproxy.scheduler.wait", "s",
            "Time a request unit waited in the QoS scheduler for a server slot, by pool and priority.",
            tags: null, advice);
        Queries = new QueryCounters();
        Fingerprints = new TopFingerprints(config.TopFingerprints);
    }

    public TimeProvider Time { get; }

    public TelemetryConfig Config => _config;

    public Meter Meter { get; }

    public ActivitySource Source { get; }

    public Histogram<double> QueryDuration { get; }

    public Histogram<double> FingerprintDuration { get; }

    public Histogram<double> SchedulerWait { get; }

    public QueryCounters Queries { get; }

    public TopFingerprints Fingerprints { get; }

    /// <summary>The telemetry of one client session, for its request units.</summary>
    public UnitTelemetry OpenSession(string protocol, string database, string tenant) =>
        new(this, protocol, database, tenant, Queries.CellFor(database, tenant));

    /// <summary>A reload's settings: the number of fingerprints with their own series (trace sampling is read by <see cref="TraceSampler"/>).</summary>
    public void Reconfigure(TelemetryConfig config)
    {
        _config = config;
        Fingerprints.Capacity = config.TopFingerprints;
    }

    public void Dispose()
    {
        Meter.Dispose();
        Source.Dispose();
    }
}
