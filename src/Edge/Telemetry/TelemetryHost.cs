using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using MProxy.Edge.Configuration;
using MProxy.Edge.Hosting;
using MProxy.Edge.Qos;

namespace MProxy.Edge.Telemetry;

/// <summary>
/// Starts the edge's telemetry with the host: creates the observable instruments and the Prometheus
/// listener before the first scrape (none without the endpoint), and the OTLP export when one is
/// configured; stops the export (flushing it) when the edge stops.
/// </summary>
internal sealed class TelemetryHost(EdgeTelemetry telemetry, EdgeMetrics metrics, ConfigStore config, ILogger<TelemetryHost> log, PrometheusExporter? prometheus = null)
    : IHostedService, IDisposable
{
    private OtlpExport? _otlp;

    public EdgeMetrics Metrics { get; } = metrics;

    /// <summary>The <c>/metrics</c> exporter; null when <c>telemetry.metrics</c> is off.</summary>
    public PrometheusExporter? Prometheus { get; } = prometheus;

    public Task StartAsync(CancellationToken cancellationToken)
    {
        var current = config.Current;
        if (current.Telemetry.Metrics && current.Listen.Admin is { } admin)
            TelemetryLog.MetricsEndpoint(log, admin.ToString());
        if (current.Telemetry.Otlp is { } otlp)
        {
            try
            {
                _otlp = new OtlpExport(telemetry, otlp, log);
            }
            catch (Exception e) when (e is ArgumentException or InvalidOperationException or NotSupportedException)
            {
                TelemetryLog.OtlpExportFailed(log, otlp.Endpoint.ToString(), e);
            }
        }
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken)
    {
        Dispose();
        return Task.CompletedTask;
    }

    public void Dispose()
    {
        _otlp?.Dispose();
        _otlp = null;
    }
}

/// <summary>Once per janitor tick: which fingerprints get latency series of their own (the heaviest by RU).</summary>
internal sealed class TelemetryTick(EdgeTelemetry telemetry, QosGate? qos = null) : IPeriodicTask
{
    public string Name => "telemetry";

    public void Tick()
    {
        if (qos is { Config.Enabled: true } gate)
            telemetry.Fingerprints.Refresh(gate.Fingerprints);
    }
}
