using Microsoft.Extensions.Logging;

namespace MProxy.Edge.Telemetry;

/// <summary>Structured log events of telemetry (event ids 4000–4019). Never secrets (OTLP headers) or parameter values.</summary>
internal static partial class TelemetryLog
{
    [LoggerMessage(4000, LogLevel.Information, "Exporting telemetry over OTLP to {Endpoint} ({Protocol}): traces {Traces} (sample ratio {SampleRatio}), metrics {Metrics}")]
    public static partial void OtlpExportStarted(ILogger logger, string endpoint, string protocol, bool traces, bool metrics, double sampleRatio);

    [LoggerMessage(4001, LogLevel.Error, "Could not start the OTLP export to {Endpoint}; the edge runs without it")]
    public static partial void OtlpExportFailed(ILogger logger, string endpoint, Exception exception);

    [LoggerMessage(4002, LogLevel.Information, "Serving Prometheus metrics at http://{Address}/metrics")]
    public static partial void MetricsEndpoint(ILogger logger, string address);

    [LoggerMessage(4003, LogLevel.Error, "A metrics scrape failed")]
    public static partial void ScrapeFailed(ILogger logger, Exception exception);
}
