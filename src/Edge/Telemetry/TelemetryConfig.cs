namespace MProxy.Edge.Telemetry;

/// <summary>
/// The <c>telemetry:</c> section: the Prometheus endpoint, how many fingerprints get their own
/// latency series, trace sampling, and the OTLP export (off unless an endpoint is configured).
/// Immutable; a reload builds a new one.
/// </summary>
public sealed record TelemetryConfig
{
    /// <summary>Serve <c>/metrics</c> (Prometheus text format) on <c>listen.admin</c>.</summary>
    public bool Metrics { get; init; } = true;

    /// <summary>Fingerprints (the heaviest by RU) with their own latency series; the rest are aggregated as <c>other</c>.</summary>
    public int TopFingerprints { get; init; } = 20;

    /// <summary>Fraction of request units traced (by trace id), 0 to 1.</summary>
    public double TraceSampleRatio { get; init; } = 0.01;

    /// <summary>Where to export metrics and traces over OTLP; null: no export.</summary>
    public OtlpConfig? Otlp { get; init; }
}

public enum OtlpProtocol
{
    HttpProtobuf,
    Grpc,
}

/// <summary>An OTLP collector: <see cref="Endpoint"/> is the base address (<c>/v1/traces</c> and <c>/v1/metrics</c> are appended for HTTP).</summary>
public sealed record OtlpConfig
{
    public required Uri Endpoint { get; init; }

    public OtlpProtocol Protocol { get; init; } = OtlpProtocol.HttpProtobuf;

    public TimeSpan ExportInterval { get; init; } = TimeSpan.FromSeconds(10);

    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Headers sent with each export (e.g. an API key): secrets, never shown.</summary>
    public IReadOnlyDictionary<string, string> Headers { get; init; } = new Dictionary<string, string>();

    public string ServiceName { get; init; } = "mproxy";

    public bool Traces { get; init; } = true;

    public bool Metrics { get; init; } = true;

    public override string ToString() => $"OtlpConfig {{ Endpoint = {Endpoint}, Protocol = {Protocol}, Headers = {Headers.Count} }}";
}
