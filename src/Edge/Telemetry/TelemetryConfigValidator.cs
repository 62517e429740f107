using MProxy.Edge.Configuration;

namespace MProxy.Edge.Telemetry;

/// <summary>Validates the <c>telemetry:</c> section, reporting the first error with its key path.</summary>
internal static class TelemetryConfigValidator
{
    private const string Root = "telemetry";

    public static TelemetryConfig Validate(RawTelemetry? raw)
    {
        var defaults = new TelemetryConfig();
        if (raw is null)
            return defaults;
        var ratio = raw.Traces?.SampleRatio ?? defaults.TraceSampleRatio;
        if (!(ratio >= 0 && ratio <= 1))
            throw new ConfigException($"{Root}.traces.sampleRatio", $"{ratio} is not between 0 and 1");
        var top = raw.TopFingerprints ?? defaults.TopFingerprints;
        if (top is < 0 or > 10_000)
            throw new ConfigException($"{Root}.topFingerprints", $"{top} is outside 0..10000");
        return new TelemetryConfig
        {
            Metrics = raw.Metrics ?? defaults.Metrics,
            TopFingerprints = top,
            TraceSampleRatio = ratio,
            Otlp = ValidateOtlp($"{Root}.otlp", raw.Otlp),
        };
    }

    private static OtlpConfig? ValidateOtlp(string key, RawOtlp? raw)
    {
        if (raw is null)
            return null;
        if (string.IsNullOrWhiteSpace(raw.Endpoint))
            throw new ConfigException($"{key}.endpoint", "is required (the collector's address, e.g. http://127.0.0.1:4318)");
        if (!Uri.TryCreate(raw.Endpoint, UriKind.Absolute, out var endpoint) || endpoint.Scheme is not ("http" or "https"))
            throw new ConfigException($"{key}.endpoint", $"'{raw.Endpoint}' is not an http:// or https:// address");
        var protocol = (raw.Protocol ?? "http/protobuf").ToLowerInvariant() switch
        {
            "http/protobuf" or "http" => OtlpProtocol.HttpProtobuf,
            "grpc" => OtlpProtocol.Grpc,
            var other => throw new ConfigException($"{key}.protocol", $"'{other}' is not one of http/protobuf, grpc"),
        };
        var defaults = new OtlpConfig { Endpoint = endpoint };
        var headers = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        foreach (var (name, value) in raw.Headers ?? [])
        {
            if (string.IsNullOrWhiteSpace(name) || name.Contains(',', StringComparison.Ordinal) || name.Contains('=', StringComparison.Ordinal))
                throw new ConfigException($"{key}.headers", $"'{name}' is not a header name");
            headers[name] = value ?? "";
        }
        return defaults with
        {
            Protocol = protocol,
            ExportInterval = Ms($"{key}.exportIntervalMs", raw.ExportIntervalMs, defaults.ExportInterval, 100),
            Timeout = Ms($"{key}.timeoutMs", raw.TimeoutMs, defaults.Timeout, 100),
            Headers = headers,
            ServiceName = string.IsNullOrWhiteSpace(raw.ServiceName) ? defaults.ServiceName : raw.ServiceName,
            Traces = raw.Traces ?? true,
            Metrics = raw.Metrics ?? true,
        };
    }

    private static TimeSpan Ms(string key, int? value, TimeSpan fallback, int min) => value switch
    {
        null => fallback,
        < 0 => throw new ConfigException(key, $"{value} ms is negative"),
        var ms when ms < min => throw new ConfigException(key, $"{ms} ms is below the minimum of {min} ms"),
        var ms => TimeSpan.FromMilliseconds(ms.Value),
    };
}
