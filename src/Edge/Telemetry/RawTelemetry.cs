namespace MProxy.Edge.Telemetry;

// The YAML shape of the `telemetry:` section (camelCase keys), validated by TelemetryConfigValidator.
#pragma warning disable CA1812 // instantiated by the YAML deserializer
#pragma warning disable CA2227 // collection setters are what the deserializer uses

internal sealed class RawTelemetry
{
    public bool? Metrics { get; set; }
    public int? TopFingerprints { get; set; }
    public RawTraces? Traces { get; set; }
    public RawOtlp? Otlp { get; set; }
}

internal sealed class RawTraces
{
    public double? SampleRatio { get; set; }
}

internal sealed class RawOtlp
{
    public string? Endpoint { get; set; }
    public string? Protocol { get; set; }
    public int? ExportIntervalMs { get; set; }
    public int? TimeoutMs { get; set; }
    public Dictionary<string, string>? Headers { get; set; }
    public string? ServiceName { get; set; }
    public bool? Traces { get; set; }
    public bool? Metrics { get; set; }
}
