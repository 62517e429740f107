using MProxy.Edge.Configuration;
using MProxy.Edge.Telemetry;

namespace MProxy.Edge.Tests.Telemetry;

public sealed class TelemetryConfigTests
{
    private const string Base = """
        databases:
          - name: app
            primary: 127.0.0.1:5432
        """;

    [Fact]
    public void Load_NoTelemetrySection_MetricsOnNoExport()
    {
        var config = ConfigLoader.LoadYaml(Base);

        Assert.True(config.Telemetry.Metrics);
        Assert.Null(config.Telemetry.Otlp);
        Assert.Equal(20, config.Telemetry.TopFingerprints);
        Assert.True(config.Reload.WatchFile);
    }

    [Fact]
    public void Load_FullTelemetrySection_AllKeysRead()
    {
        var config = ConfigLoader.LoadYaml(Base + """

            telemetry:
              metrics: false
              topFingerprints: 5
              traces: { sampleRatio: 0.25 }
              otlp:
                endpoint: http://collector:4318
                protocol: grpc
                exportIntervalMs: 2000
                headers: { x-api-key: secret-key }
                serviceName: edge-a
            reload: { watchFile: false, debounceMs: 100 }
            """);

        var t = config.Telemetry;
        Assert.False(t.Metrics);
        Assert.Equal(5, t.TopFingerprints);
        Assert.Equal(0.25, t.TraceSampleRatio);
        Assert.Equal(new Uri("http://collector:4318"), t.Otlp!.Endpoint);
        Assert.Equal(OtlpProtocol.Grpc, t.Otlp.Protocol);
        Assert.Equal(TimeSpan.FromSeconds(2), t.Otlp.ExportInterval);
        Assert.Equal("secret-key", t.Otlp.Headers["x-api-key"]);
        Assert.Equal("edge-a", t.Otlp.ServiceName);
        Assert.DoesNotContain("secret-key", t.Otlp.ToString());
        Assert.False(config.Reload.WatchFile);
        Assert.Equal(TimeSpan.FromMilliseconds(100), config.Reload.Debounce);
    }

    [Theory]
    [InlineData("telemetry: { traces: { sampleRatio: 1.5 } }", "telemetry.traces.sampleRatio")]
    [InlineData("telemetry: { otlp: { protocol: grpc } }", "telemetry.otlp.endpoint")]
    [InlineData("telemetry: { otlp: { endpoint: 'ftp://x' } }", "telemetry.otlp.endpoint")]
    [InlineData("telemetry: { otlp: { endpoint: 'http://x', protocol: thrift } }", "telemetry.otlp.protocol")]
    [InlineData("telemetry: { otlp: { endpoint: 'http://x', exportIntervalMs: 5 } }", "telemetry.otlp.exportIntervalMs")]
    [InlineData("telemetry: { topFingerprints: -1 }", "telemetry.topFingerprints")]
    [InlineData("reload: { debounceMs: -1 }", "reload.debounceMs")]
    public void Load_InvalidValue_ErrorNamesTheKey(string section, string key)
    {
        var e = Assert.Throws<ConfigException>(() => ConfigLoader.LoadYaml(Base + "\n" + section));
        Assert.Equal(key, e.Key);
    }
}
