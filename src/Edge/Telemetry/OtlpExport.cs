using Microsoft.Extensions.Logging;
using OpenTelemetry;
using OpenTelemetry.Exporter;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;

namespace MProxy.Edge.Telemetry;

/// <summary>
/// The OpenTelemetry SDK wired by hand when <c>telemetry.otlp</c> is configured: a meter provider
/// exporting the edge's instruments and a tracer provider exporting its sampled request-unit spans,
/// both over OTLP (HTTP/protobuf or gRPC). Disposing flushes and stops them.
/// </summary>
internal sealed class OtlpExport : IDisposable
{
    private readonly MeterProvider? _meters;
    private readonly TracerProvider? _tracer;

    public OtlpExport(EdgeTelemetry telemetry, OtlpConfig otlp, ILogger log)
    {
        var version = telemetry.Meter.Version;
        var resource = ResourceBuilder.CreateEmpty()
            .AddService(otlp.ServiceName, serviceVersion: version, autoGenerateServiceInstanceId: true)
            .AddTelemetrySdk();
        var interval = (int)otlp.ExportInterval.TotalMilliseconds;
        if (otlp.Traces)
        {
            _tracer = Sdk.CreateTracerProviderBuilder()
                .SetResourceBuilder(resource)
                .AddSource(EdgeTelemetry.ActivitySourceName)
                .SetSampler(new TraceSampler(telemetry))
                .AddOtlpExporter(o =>
                {
                    Configure(o, otlp, "v1/traces");
                    o.BatchExportProcessorOptions.ScheduledDelayMilliseconds = interval;
                })
                .Build();
        }
        if (otlp.Metrics)
        {
            _meters = Sdk.CreateMeterProviderBuilder()
                .SetResourceBuilder(resource)
                .AddMeter(EdgeTelemetry.MeterName)
                .AddOtlpExporter((o, reader) =>
                {
                    Configure(o, otlp, "v1/metrics");
                    reader.PeriodicExportingMetricReaderOptions.ExportIntervalMilliseconds = interval;
                    reader.TemporalityPreference = MetricReaderTemporalityPreference.Cumulative;
                })
                .Build();
        }
        TelemetryLog.OtlpExportStarted(log, otlp.Endpoint.ToString(), otlp.Protocol.ToString(), otlp.Traces, otlp.Metrics, telemetry.Config.TraceSampleRatio);
    }

    private static void Configure(OtlpExporterOptions options, OtlpConfig otlp, string signalPath)
    {
        options.Protocol = otlp.Protocol == OtlpProtocol.Grpc ? OtlpExportProtocol.Grpc : OtlpExportProtocol.HttpProtobuf;
        // With HTTP the SDK takes an explicit endpoint as the full URL: append the signal's path.
        options.Endpoint = otlp.Protocol == OtlpProtocol.Grpc ? otlp.Endpoint : new Uri(WithSlash(otlp.Endpoint), signalPath);
        options.TimeoutMilliseconds = (int)otlp.Timeout.TotalMilliseconds;
        if (otlp.Headers.Count > 0)
            options.Headers = string.Join(',', otlp.Headers.Select(h => $"{h.Key}={h.Value}"));
    }

    private static Uri WithSlash(Uri endpoint) =>
        endpoint.AbsolutePath.EndsWith('/') ? endpoint : new Uri(endpoint + "/");

    public void Dispose()
    {
        _tracer?.Dispose();
        _meters?.Dispose();
    }
}

/// <summary>
/// Samples request-unit spans by trace id at <see cref="TelemetryConfig.TraceSampleRatio"/> (read at
/// each decision, so a reload changes it). A client's <c>traceparent</c> makes the span part of the
/// client's trace; the same ratio then samples consistently with other services that use it.
/// </summary>
internal sealed class TraceSampler(EdgeTelemetry telemetry) : Sampler
{
    private volatile RatioSampler _current = new(-1, new AlwaysOffSampler());

    public override SamplingResult ShouldSample(in SamplingParameters samplingParameters)
    {
        var ratio = telemetry.Config.TraceSampleRatio;
        var current = _current;
        if (current.Ratio != ratio)
            _current = current = new RatioSampler(ratio, new TraceIdRatioBasedSampler(ratio));
        return current.Sampler.ShouldSample(samplingParameters);
    }

    private sealed record RatioSampler(double Ratio, Sampler Sampler);
}
