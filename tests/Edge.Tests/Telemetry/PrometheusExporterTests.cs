using System.Diagnostics;
using System.Diagnostics.Metrics;
using MProxy.Edge.Telemetry;
using MProxy.TestSupport;

namespace MProxy.Edge.Tests.Telemetry;

public sealed class PrometheusExporterTests : IDisposable
{
    private readonly Meter _meter = new("MProxy.Edge");
    private readonly PrometheusExporter _exporter;

    public PrometheusExporterTests() => _exporter = new PrometheusExporter(_meter);

    public void Dispose()
    {
        _exporter.Dispose();
        _meter.Dispose();
    }

    [Fact]
    public void Scrape_HistogramRecordings_CumulativeBucketsSumAndCount()
    {
        var histogram = _meter.CreateHistogram("mproxy.test.duration", "s", "Test latency.", null,
            new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.01, 0.1, 1] });
        foreach (var seconds in new[] { 0.005, 0.01, 0.05, 0.5, 5 })
            histogram.Record(seconds, new TagList { { "database", "app" }, { "type", "read" } });
        histogram.Record(0.2, new TagList { { "database", "other" }, { "type", "write" } });

        var scrape = PrometheusScrape.Parse(_exporter.Scrape());

        var family = scrape.Families["mproxy_test_duration_seconds"];
        Assert.Equal("histogram", family.Type);
        Assert.Equal("Test latency.", family.Help);
        (string, string)[] app = [("database", "app"), ("type", "read")];
        Assert.Equal(2, scrape.Value("mproxy_test_duration_seconds_bucket", [.. app, ("le", "0.01")]));  // 0.005 and 0.01 (le is inclusive)
        Assert.Equal(3, scrape.Value("mproxy_test_duration_seconds_bucket", [.. app, ("le", "0.1")]));
        Assert.Equal(4, scrape.Value("mproxy_test_duration_seconds_bucket", [.. app, ("le", "1")]));
        Assert.Equal(5, scrape.Value("mproxy_test_duration_seconds_bucket", [.. app, ("le", "+Inf")]));
        Assert.Equal(5, scrape.Value("mproxy_test_duration_seconds_count", app));
        Assert.Equal(5.565, scrape.Value("mproxy_test_duration_seconds_sum", app), 9);
        Assert.Equal(1, scrape.Value("mproxy_test_duration_seconds_count", ("database", "other")));
    }

    /// <summary>
    /// Sessions record with label strings of their own (parsed from each client's startup), so
    /// equal values in other string instances must find the same series, whatever their length
    /// (the label hash reads eight bytes at a time, then a tail); values one character apart stay apart.
    /// </summary>
    [Fact]
    public void Scrape_EqualLabelValuesInOtherStringInstances_OneSeriesEach_ValuesOneCharacterApart_Separate()
    {
        var histogram = _meter.CreateHistogram("mproxy.test.instances", "s", "Test latency.", null,
            new InstrumentAdvice<double> { HistogramBucketBoundaries = [1] });
        var values = Enumerable.Range(0, 18).SelectMany(n => new[] { "db" + new string('x', n), "db" + new string('x', n) + "y" }).ToArray();
        foreach (var value in values)
        {
            for (var copy = 0; copy < 3; copy++)
                histogram.Record(0.5, new KeyValuePair<string, object?>("database", new string(value.AsSpan())), new KeyValuePair<string, object?>("type", new string("read".AsSpan())));
        }

        var scrape = PrometheusScrape.Parse(_exporter.Scrape());

        var counts = scrape.Samples("mproxy_test_instances_seconds_count").ToList();
        Assert.Equal(values.Length, counts.Count);
        foreach (var value in values)
            Assert.Equal(3, scrape.Value("mproxy_test_instances_seconds_count", ("database", value), ("type", "read")));
    }

    [Fact]
    public void Scrape_HistogramRecordedFromManyThreads_CountEqualsInfBucketAndEveryRecording()
    {
        var histogram = _meter.CreateHistogram("mproxy.test.parallel", "s", "Test latency.", null,
            new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.001, 0.01] });
        const int threads = 8;
        const int perThread = 10_000;

        Concurrently.Run(threads, () =>
        {
            for (var i = 0; i < perThread; i++)
                histogram.Record((i % 4) switch { 0 => 0.0005, 1 => 0.005, 2 => 0.5, _ => 0.0005 }, new TagList { { "database", "app" } });
        });

        var scrape = PrometheusScrape.Parse(_exporter.Scrape());
        (string, string)[] app = [("database", "app")];
        Assert.Equal(threads * perThread / 2, scrape.Value("mproxy_test_parallel_seconds_bucket", [.. app, ("le", "0.001")]));
        Assert.Equal(threads * perThread * 3 / 4, scrape.Value("mproxy_test_parallel_seconds_bucket", [.. app, ("le", "0.01")]));
        Assert.Equal(threads * perThread, scrape.Value("mproxy_test_parallel_seconds_bucket", [.. app, ("le", "+Inf")]));
        Assert.Equal(threads * perThread, scrape.Value("mproxy_test_parallel_seconds_count", app));
        Assert.Equal(threads * perThread / 4 * (0.0005 + 0.005 + 0.5 + 0.0005), scrape.Value("mproxy_test_parallel_seconds_sum", app), 6);
    }

    [Fact]
    public void Scrape_ObservableInstruments_ReadAtScrapeTime()
    {
        long queries = 3;
        _meter.CreateObservableCounter("mproxy.test.queries", () => new Measurement<long>(queries, new KeyValuePair<string, object?>("tenant", "t1")), "{query}", "Queries.");
        _meter.CreateObservableGauge("mproxy.test.lag", () => 1.5, "s");

        var first = PrometheusScrape.Parse(_exporter.Scrape());
        queries = 10;
        var second = PrometheusScrape.Parse(_exporter.Scrape());

        Assert.Equal("counter", first.Families["mproxy_test_queries_total"].Type);
        Assert.Equal(3, first.Value("mproxy_test_queries_total", ("tenant", "t1")));
        Assert.Equal(10, second.Value("mproxy_test_queries_total", ("tenant", "t1")));
        Assert.Equal("gauge", second.Families["mproxy_test_lag_seconds"].Type);
        Assert.Equal(1.5, second.Value("mproxy_test_lag_seconds"));
    }

    [Fact]
    public void Scrape_LabelValuesWithQuotesBackslashesAndNewlines_EscapedAndParsedBack()
    {
        const string tenant = "we\"ird\\ten\nant";
        _meter.CreateObservableGauge("mproxy.test.odd", () => new Measurement<int>(7, new KeyValuePair<string, object?>("tenant", tenant)),
            description: "Help with a back\\slash\nand a new line.");

        var text = _exporter.Scrape();
        var scrape = PrometheusScrape.Parse(text);

        Assert.Contains("tenant=\"we\\\"ird\\\\ten\\nant\"", text);
        Assert.Equal(7, scrape.Value("mproxy_test_odd", ("tenant", tenant)));
        Assert.Equal("Help with a back\\slash\nand a new line.", scrape.Families["mproxy_test_odd"].Help);
    }

    [Fact]
    public void Scrape_InstrumentsOfAnotherMeterWithTheSameName_NotIncluded()
    {
        using var other = new Meter("MProxy.Edge");
        other.CreateObservableGauge("mproxy.test.foreign", () => 1);
        _meter.CreateObservableGauge("mproxy.test.own", () => 2);

        var scrape = PrometheusScrape.Parse(_exporter.Scrape());

        Assert.True(scrape.Families.ContainsKey("mproxy_test_own"));
        Assert.False(scrape.Families.ContainsKey("mproxy_test_foreign"));
    }

    [Fact]
    public void Scrape_SpecialValues_RenderedAsPrometheusSpellsThem()
    {
        _meter.CreateObservableGauge("mproxy.test.special", () => new[]
        {
            new Measurement<double>(double.PositiveInfinity, new KeyValuePair<string, object?>("v", "inf")),
            new Measurement<double>(double.NaN, new KeyValuePair<string, object?>("v", "nan")),
            new Measurement<double>(1e-7, new KeyValuePair<string, object?>("v", "tiny")),
        });

        var text = _exporter.Scrape();
        var scrape = PrometheusScrape.Parse(text);

        Assert.Contains("mproxy_test_special{v=\"inf\"} +Inf", text);
        Assert.True(double.IsNaN(scrape.Value("mproxy_test_special", ("v", "nan"))));
        Assert.Equal(1e-7, scrape.Value("mproxy_test_special", ("v", "tiny")));
    }

    [Fact]
    public void Scrape_WithRuntimeMeter_ExportsGcAllocationsAndCpu()
    {
        using var meter = new Meter("MProxy.Edge.RuntimeTest");
        using var exporter = new PrometheusExporter(meter, includeRuntime: true);

        var before = PrometheusScrape.Parse(exporter.Scrape()).Value("dotnet_gc_heap_total_allocated_bytes_total");
        var garbage = new List<byte[]>();
        for (var i = 0; i < 64; i++)
            garbage.Add(new byte[16 * 1024]);
        var after = PrometheusScrape.Parse(exporter.Scrape());

        Assert.True(garbage.Count == 64 && after.Value("dotnet_gc_heap_total_allocated_bytes_total") >= before + 64 * 16 * 1024,
            "allocations since the first scrape are counted");
        Assert.Equal("counter", after.Families["dotnet_process_cpu_time_seconds_total"].Type);
        Assert.True(after.Sum("dotnet_process_cpu_time_seconds_total") > 0);
        Assert.DoesNotContain(after.Families.Keys, name => name.StartsWith("mproxy_", StringComparison.Ordinal));
    }

    [Fact]
    public void Scrape_WithoutRuntimeMeter_ExportsOnlyTheEdgeMeter()
    {
        _meter.CreateCounter<long>("mproxy.test.only").Add(1);

        var scrape = PrometheusScrape.Parse(_exporter.Scrape());

        Assert.DoesNotContain(scrape.Families.Keys, name => name.StartsWith("dotnet_", StringComparison.Ordinal));
        Assert.Equal(1, scrape.Value("mproxy_test_only_total"));
    }

    [Theory]
    [InlineData("mproxy.queries", "{query}", true, "mproxy_queries_total")]
    [InlineData("mproxy.query.duration", "s", false, "mproxy_query_duration_seconds")]
    [InlineData("mproxy.replica.lag_seconds", "s", false, "mproxy_replica_lag_seconds")]
    [InlineData("mproxy.relayed", "By", true, "mproxy_relayed_bytes_total")]
    [InlineData("mproxy.tenant.ru", "RU", true, "mproxy_tenant_ru_total")]
    [InlineData("weird-name.x", null, false, "weird_name_x")]
    public void MetricName_UnitsAndCounters_FollowPrometheusConventions(string instrument, string? unit, bool counter, string expected) =>
        Assert.Equal(expected, PrometheusText.MetricName(instrument, unit, counter));

}
