using MProxy.TestSupport;

namespace MProxy.Edge.Tests.Telemetry;

/// <summary>The test parser must reject what Prometheus rejects, or the exporter's tests prove nothing.</summary>
public sealed class PrometheusScrapeTests
{
    [Theory]
    [InlineData("m{a=\"x\"} 1\nm{a=\"y\"} 2\n")]
    [InlineData("# HELP m_total Help.\n# TYPE m_total counter\nm_total{a=\"1\"} 1\nm_total{a=\"2\"} 2\n")]
    public void Parse_ValidExposition_Accepted(string text) => PrometheusScrape.Parse(text);

    [Theory]
    [InlineData("m{a=\"x} 1\n")]                          // unterminated value
    [InlineData("m{a=\"x\\t\"} 1\n")]                     // invalid escape
    [InlineData("m{1a=\"x\"} 1\n")]                       // invalid label name
    [InlineData("m one\n")]                                // not a number
    [InlineData("m 1")]                                    // no final line feed
    [InlineData("# TYPE m gauge\nm 1\n# TYPE n gauge\nn 1\nm 2\n")] // family not contiguous
    [InlineData("# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n")] // not cumulative
    [InlineData("# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n")] // +Inf differs from count
    public void Parse_InvalidExposition_Throws(string text) =>
        Assert.Throws<FormatException>(() => PrometheusScrape.Parse(text));
}
