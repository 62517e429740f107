using System.Diagnostics;
using MProxy.Abstractions;
using MProxy.Edge.Configuration;
using MProxy.Edge.Qos;
using MProxy.Edge.Routing;
using MProxy.Edge.Telemetry;
using MProxy.TestSupport;

namespace MProxy.Edge.Tests.Telemetry;

public sealed class UnitTelemetryTests : IDisposable
{
    private const ulong Fingerprint = 0xabcdef;
    private static readonly HostPort Primary = new("10.0.0.1", 5432);
    private readonly ManualTimeProvider _time = new();
    private readonly EdgeTelemetry _telemetry;
    private readonly PrometheusExporter _exporter;

    public UnitTelemetryTests()
    {
        _telemetry = new EdgeTelemetry(new TelemetryConfig { TopFingerprints = 1 }, _time);
        _exporter = new PrometheusExporter(_telemetry.Meter);
    }

    public void Dispose()
    {
        _exporter.Dispose();
        _telemetry.Dispose();
    }

    private static StatementInfo Read(ulong fingerprint = Fingerprint, string? traceParent = null) =>
        new() { Access = StatementAccess.Read, Fingerprint = fingerprint, StatementCount = 1, Hints = new QueryHints { TraceParent = traceParent } };

    private PrometheusScrape Scrape() => PrometheusScrape.Parse(_exporter.Scrape());

    [Fact]
    public void Complete_AfterSent_CountsQueryAndRecordsLatency()
    {
        using var unit = _telemetry.OpenSession("postgresql", "app", "shop");

        unit.Begin(1, Read(), classified: true);
        unit.Sent(primary: false, Primary);
        _time.Advance(TimeSpan.FromMilliseconds(30));
        unit.Complete(1, ru: 2);

        var scrape = Scrape();
        (string, string)[] series = [("database", "app"), ("type", "read"), ("destination", "replica")];
        Assert.Equal(1, scrape.Value("mproxy_query_duration_seconds_count", series));
        Assert.Equal(0.03, scrape.Value("mproxy_query_duration_seconds_sum", series), 9);
        Assert.Equal(0, scrape.Value("mproxy_query_duration_seconds_bucket", [.. series, ("le", "0.025")]));
        Assert.Equal(1, scrape.Value("mproxy_query_duration_seconds_bucket", [.. series, ("le", "0.05")]));
        Assert.Equal(1, _telemetry.Queries.CellFor("app", "shop").Queries(UnitType.Read, replica: true));
    }

    [Fact]
    public void Refused_BeforeSent_NotCountedAsQuery()
    {
        using var unit = _telemetry.OpenSession("postgresql", "app", "shop");

        unit.Begin(1, Read(), classified: true);
        unit.Refused("53400");
        unit.Complete(1, ru: 0);

        var cell = _telemetry.Queries.CellFor("app", "shop");
        Assert.Equal(0, cell.Queries(UnitType.Read, replica: false));
        Assert.Empty(Scrape().Samples("mproxy_query_duration_seconds_count"));
    }

    [Fact]
    public void Begin_WhilePreviousUnitOpen_PreviousCountedButItsLatencyNotRecorded()
    {
        using var unit = _telemetry.OpenSession("postgresql", "app", "shop");

        unit.Begin(1, Read(), classified: true);
        unit.Sent(primary: true, Primary);
        unit.Begin(2, Read(), classified: true);
        unit.Sent(primary: true, Primary);
        unit.Complete(1, 0);   // superseded: ignored
        unit.Complete(2, 0);

        Assert.Equal(2, _telemetry.Queries.CellFor("app", "shop").Queries(UnitType.Read, replica: false));
        Assert.Equal(1, Scrape().Sum("mproxy_query_duration_seconds_count"));
    }

    [Fact]
    public void Begin_Unclassified_TypeUnknown()
    {
        using var unit = _telemetry.OpenSession("postgresql", "app", "app");

        unit.Begin(1, default, classified: false);
        unit.Sent(primary: true, Primary);
        unit.Complete(1, 0);

        Assert.Equal(1, Scrape().Value("mproxy_query_duration_seconds_count", ("type", "unknown")));
    }

    [Fact]
    public void Complete_FingerprintOutsideTopN_AggregatedAsOther_InsideGetsOwnSeries()
    {
        var stats = new FingerprintStats(capacity: 10, shards: 1);
        stats.Record(0, "shop", Fingerprint, ru: 100, latencyMs: 1);
        stats.Record(0, "shop", 0x99, ru: 1, latencyMs: 1);
        _telemetry.Fingerprints.Refresh(stats);   // TopFingerprints = 1: only the heavier one
        using var unit = _telemetry.OpenSession("postgresql", "app", "shop");

        foreach (var (n, fingerprint) in new[] { (1, Fingerprint), (2, 0x99UL), (3, 0x77UL) })
        {
            unit.Begin(n, Read(fingerprint), classified: true);
            unit.Sent(primary: true, Primary);
            unit.Complete(n, 1);
        }

        var scrape = Scrape();
        Assert.Equal(1, scrape.Value("mproxy_fingerprint_duration_seconds_count", ("tenant", "shop"), ("fingerprint", "0000000000abcdef")));
        Assert.Equal(2, scrape.Value("mproxy_fingerprint_duration_seconds_count", ("tenant", "*"), ("fingerprint", "other")));
        Assert.Equal(2, scrape.Families["mproxy_fingerprint_duration_seconds"].Samples.Count(s => s.Name.EndsWith("_count", StringComparison.Ordinal)));
    }

    [Fact]
    public void SlotGranted_RecordsSchedulerWaitByPoolAndPriority()
    {
        using var unit = _telemetry.OpenSession("postgresql", "app", "shop");

        unit.Begin(1, Read(), classified: true);
        unit.SlotGranted("app/app@h:1", Priority.Low, TimeSpan.FromMilliseconds(4));

        Assert.Equal(0.004, Scrape().Value("mproxy_scheduler_wait_seconds_sum", ("pool", "app/app@h:1"), ("priority", "low")), 9);
    }

    [Fact]
    public void Begin_WithClientTraceParent_SpanJoinsTheClientsTraceAndCarriesNoText()
    {
        const string traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
        var spans = new List<Activity>();
        using var listener = new ActivityListener
        {
            ShouldListenTo = source => ReferenceEquals(source, _telemetry.Source),
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = spans.Add,
        };
        ActivitySource.AddActivityListener(listener);
        using var unit = _telemetry.OpenSession("postgresql", "app", "shop");

        unit.Begin(1, Read(traceParent: $"00-{traceId}-00f067aa0ba902b7-01"), classified: true);
        unit.Sent(primary: true, Primary);
        unit.AddBytes(100, 20);
        unit.Complete(1, ru: 3.5);

        var span = Assert.Single(spans);
        Assert.Equal(traceId, span.TraceId.ToHexString());
        Assert.Equal("00f067aa0ba902b7", span.ParentSpanId.ToHexString());
        Assert.Equal(EdgeTelemetry.SpanName, span.DisplayName);
        Assert.Equal("shop", span.GetTagItem("mproxy.tenant"));
        Assert.Equal("0000000000abcdef", span.GetTagItem("mproxy.fingerprint"));
        Assert.Equal(3.5, span.GetTagItem("mproxy.ru"));
        Assert.Equal(100L, span.GetTagItem("mproxy.bytes_to_client"));
        Assert.Null(span.GetTagItem("db.statement"));
        Assert.Null(Activity.Current);
    }

    [Fact]
    public void Refused_SampledUnit_SpanEndsWithErrorStatus()
    {
        var spans = new List<Activity>();
        using var listener = new ActivityListener
        {
            ShouldListenTo = source => ReferenceEquals(source, _telemetry.Source),
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = spans.Add,
        };
        ActivitySource.AddActivityListener(listener);
        using var unit = _telemetry.OpenSession("postgresql", "app", "shop");

        unit.Begin(1, Read(), classified: true);
        unit.Refused("53400");

        var span = Assert.Single(spans);
        Assert.Equal(ActivityStatusCode.Error, span.Status);
        Assert.Equal("53400", span.GetTagItem("error.type"));
    }

    /// <summary>
    /// The relay completes units on its own thread while the session begins the next ones, half of
    /// them pipelined (begun before the previous one completed). Odd units are reads sent to a
    /// replica with fingerprint A, even units writes to the primary with fingerprint B: a Complete
    /// that read one unit's fields and another's would record a mixed pair. Every span that was
    /// started is stopped exactly once.
    /// </summary>
    [Fact]
    public void Complete_OnAnotherThread_RacingTheSessionsNextUnits_RecordsOnlyWholeUnits()
    {
        const ulong a = 0xa, b = 0xb;
        const int units = 200_000;
        using var telemetry = new EdgeTelemetry(new TelemetryConfig { TopFingerprints = 2 }, TimeProvider.System);
        var stats = new FingerprintStats(capacity: 10, shards: 1);
        stats.Record(0, "shop", a, ru: 10, latencyMs: 1);
        stats.Record(0, "shop", b, ru: 5, latencyMs: 1);
        telemetry.Fingerprints.Refresh(stats);
        string? type = null, destination = null;
        int recorded = 0, mixed = 0;
        using var meters = new System.Diagnostics.Metrics.MeterListener();
        meters.InstrumentPublished = (instrument, listener) =>
        {
            if (ReferenceEquals(instrument, telemetry.QueryDuration) || ReferenceEquals(instrument, telemetry.FingerprintDuration))
                listener.EnableMeasurementEvents(instrument);
        };
        meters.SetMeasurementEventCallback<double>((instrument, _, tags, _) =>
        {
            // Only the relay's thread records: the query histogram, then the fingerprint one.
            if (ReferenceEquals(instrument, telemetry.QueryDuration))
            {
                type = (string?)tags[1].Value;
                destination = (string?)tags[2].Value;
                return;
            }
            recorded++;
            var expected = (string?)tags[1].Value == TopFingerprints.Format(a) ? ("read", "replica") : ("write", "primary");
            if ((type, destination) != expected)
                mixed++;
        });
        meters.Start();
        int started = 0, stopped = 0, stoppedTwice = 0;
        var stops = new System.Collections.Concurrent.ConcurrentDictionary<Activity, int>();
        using var spans = new ActivityListener
        {
            ShouldListenTo = source => ReferenceEquals(source, telemetry.Source),
            // Every eighth unit traced: the span's slot races too.
            Sample = (ref ActivityCreationOptions<ActivityContext> _) =>
                Interlocked.Increment(ref started) % 8 == 0 ? ActivitySamplingResult.AllDataAndRecorded : ActivitySamplingResult.None,
            ActivityStopped = activity =>
            {
                Interlocked.Increment(ref stopped);
                if (stops.AddOrUpdate(activity, 1, (_, n) => n + 1) > 1)
                    Interlocked.Increment(ref stoppedTwice);
            },
        };
        ActivitySource.AddActivityListener(spans);
        var unit = telemetry.OpenSession("postgresql", "app", "shop");
        var toComplete = 0;
        var completed = 0;
        var relay = new Thread(() =>
        {
            var last = 0;
            while (last < units)
            {
                var next = Volatile.Read(ref toComplete);
                if (next == last)
                {
                    Thread.SpinWait(1);
                    continue;
                }
                unit.AddBytes(10, 0);
                unit.Complete(next, 1);
                last = next;
                Volatile.Write(ref completed, next);
            }
        });
        relay.Start();
        var random = new Random(7);
        var waited = 0;
        for (var n = 1; n <= units; n++)
        {
            var odd = n % 2 == 1;
            unit.Begin(n, new StatementInfo { Access = odd ? StatementAccess.Read : StatementAccess.Write, Fingerprint = odd ? a : b, StatementCount = 1 }, classified: true);
            unit.Sent(primary: !odd, Primary);
            Volatile.Write(ref toComplete, n);
            if (random.Next(2) == 0)
            {
                SpinWait.SpinUntil(() => Volatile.Read(ref completed) >= n);
                waited++;
            }
        }
        relay.Join();
        unit.Dispose();

        Assert.Equal(0, mixed);
        Assert.InRange(recorded, waited, units);   // at least the units the session waited for (nothing superseded them)
        var cell = telemetry.Queries.CellFor("app", "shop");
        Assert.Equal(units / 2, cell.Queries(UnitType.Read, replica: true));
        Assert.Equal(units / 2, cell.Queries(UnitType.Write, replica: false));
        Assert.Equal(0, stoppedTwice);
        Assert.Equal(stops.Count, stopped);
        Assert.Equal(units / 8, stops.Count);   // every traced unit's span, once
    }
}
