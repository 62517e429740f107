using System.Text;
using MProxy.Abstractions;
using MProxy.Edge.Routing;

namespace MProxy.Edge.Tests.Routing;

public sealed class QueryHintParserTests
{
    private const SqlDialect Pg = SqlDialect.PostgreSql;
    private const SqlDialect My = SqlDialect.MySql;
    private const string Trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    private static QueryHints Parse(string sql, SqlDialect dialect = Pg) =>
        QueryHintParser.Parse(Encoding.UTF8.GetBytes(sql), dialect, RoutingRules.Default);

    public static TheoryData<SqlDialect, string, Priority?> Priorities => new()
    {
        { Pg, "/* mproxy: priority=low */ SELECT 1", Priority.Low },
        { Pg, "/*mproxy:priority=HIGH*/SELECT 1", Priority.High },
        { Pg, "-- mproxy: priority=medium\nSELECT 1", Priority.Medium },
        { Pg, "--mproxy: priority=low\nSELECT 1", Priority.Low },
        { Pg, "SELECT 1 /* mproxy: priority=low */", Priority.Low },
        { Pg, "SELECT 1 -- mproxy: priority=low", Priority.Low },
        { Pg, "/* MProxy: Priority=Low */ SELECT 1", Priority.Low },
        { Pg, "/* mproxy: priority=urgent */ SELECT 1", null },
        { Pg, "/* mproxy: priority= */ SELECT 1", null },
        { My, "# mproxy: priority=low\nSELECT 1", Priority.Low },
        { My, "-- mproxy: priority=low\nSELECT 1", Priority.Low },
        { My, "SELECT 1 /* mproxy: priority=high */", Priority.High },
        { My, "--mproxy: priority=low\nSELECT 1", null }, // MySQL: "--" needs a space to start a comment
    };

    [Theory]
    [MemberData(nameof(Priorities))]
    public void Parse_PriorityHint_ReadsLevel(SqlDialect dialect, string sql, Priority? priority)
    {
        Assert.Equal(priority, Parse(sql, dialect).Priority);
    }

    [Theory]
    [InlineData("500ms", 500)]
    [InlineData("30s", 30_000)]
    [InlineData("2m", 120_000)]
    [InlineData("1h", 3_600_000)]
    [InlineData("24h", 86_400_000)]
    [InlineData("1S", 1_000)]
    [InlineData("'15s'", 15_000)]
    [InlineData("0s", null)]
    [InlineData("25h", null)]
    [InlineData("86400001ms", null)]
    [InlineData("9999999999ms", null)]
    [InlineData("10", null)]
    [InlineData("-5s", null)]
    [InlineData("1.5s", null)]
    [InlineData("5d", null)]
    [InlineData("ms", null)]
    public void Parse_TimeoutHint_AcceptsBoundedDurations(string value, int? milliseconds)
    {
        var hints = Parse($"/* mproxy: timeout={value} */ SELECT 1");

        Assert.Equal(milliseconds is null ? null : TimeSpan.FromMilliseconds(milliseconds.Value), hints.Timeout);
        Assert.Equal(milliseconds is null ? 1 : 0, hints.Ignored);
    }

    [Theory]
    [InlineData("primary", RouteHint.Primary, 0)]
    [InlineData("REPLICA", RouteHint.Replica, 0)]
    [InlineData("standby", RouteHint.None, 1)]
    [InlineData("", RouteHint.None, 1)]
    public void Parse_RouteHint_ReadsTarget(string value, RouteHint route, int ignored)
    {
        var hints = Parse($"SELECT 1 /* mproxy: route={value} */");

        Assert.Equal((route, ignored), (hints.Route, hints.Ignored));
    }

    [Theory]
    [InlineData("batch", "batch")]
    [InlineData("team-a.reports_v2", "team-a.reports_v2")]
    [InlineData("\"quoted\"", "quoted")]
    [InlineData("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")]
    [InlineData("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", null)]
    [InlineData("bad/name", null)]
    [InlineData("bad$name", null)]
    [InlineData("", null)]
    public void Parse_GroupHint_AcceptsBoundedNames(string value, string? group)
    {
        var hints = Parse($"/* mproxy: group={value} */ SELECT 1");

        Assert.Equal(group, hints.ResourceGroup);
        Assert.Equal(group is null ? 1 : 0, hints.Ignored);
    }

    [Theory]
    [InlineData(Trace, true)]
    [InlineData("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", true)]
    [InlineData("00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01", false)]
    [InlineData("00-00000000000000000000000000000000-00f067aa0ba902b7-01", false)]
    [InlineData("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", false)]
    [InlineData("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", false)]
    [InlineData("00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01", false)]
    [InlineData("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", false)]
    [InlineData("00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01", false)]
    [InlineData("00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01", false)]
    public void Parse_TraceParentHint_ValidatesW3CFormat(string value, bool valid)
    {
        var hints = Parse($"SELECT 1 /* mproxy: traceparent={value} */");

        Assert.Equal(valid ? value : null, hints.TraceParent);
        Assert.Equal(valid ? 0 : 1, hints.Ignored);
    }

    public static TheoryData<SqlDialect, string> NotHints => new()
    {
        { Pg, "SELECT '/* mproxy: priority=low */'" },
        { Pg, "SELECT '-- mproxy: priority=low'" },
        { Pg, "SELECT $$ /* mproxy: priority=low */ $$" },
        { Pg, "SELECT $t$ -- mproxy: priority=low\n $t$" },
        { Pg, "SELECT E'\\' /* mproxy: priority=low */'" },
        { Pg, "SELECT \"/* mproxy: priority=low */\" FROM t" },
        { Pg, "/* not mproxy: priority=low */ SELECT 1" },
        { Pg, "/* mproxy priority=low */ SELECT 1" },
        { Pg, "/* mproxyx: priority=low */ SELECT 1" },
        { Pg, "/* x /* mproxy: priority=low */ */ SELECT 1" },
        { Pg, "SELECT 1 /* mproxy: priority=low" },
        { Pg, "SELECT 1" },
        { My, "SELECT \"/* mproxy: priority=low */\"" },
        { My, "SELECT `/* mproxy: priority=low */` FROM t" },
        { My, "SELECT 'it\\'s /* mproxy: priority=low */'" },
    };

    [Theory]
    [MemberData(nameof(NotHints))]
    public void Parse_HintOutsideAnMproxyComment_IsNotAHint(SqlDialect dialect, string sql)
    {
        var hints = Parse(sql, dialect);

        Assert.True(hints.IsEmpty);
        Assert.Equal(default, hints);
    }

    [Fact]
    public void Parse_AllKeys_AreReadTogether()
    {
        var hints = Parse($"/* mproxy: priority=low timeout=30s route=primary group=batch traceparent={Trace} */ SELECT 1");

        Assert.Equal(Priority.Low, hints.Priority);
        Assert.Equal(TimeSpan.FromSeconds(30), hints.Timeout);
        Assert.Equal(RouteHint.Primary, hints.Route);
        Assert.Equal("batch", hints.ResourceGroup);
        Assert.Equal(Trace, hints.TraceParent);
        Assert.Equal(0, hints.Ignored);
    }

    [Fact]
    public void Parse_SeveralMproxyComments_MergeWithLaterWinning()
    {
        var hints = Parse("/* mproxy: priority=low timeout=1s */ SELECT 1 /* other comment */ -- mproxy: priority=high group=g\n");

        Assert.Equal(Priority.High, hints.Priority);
        Assert.Equal(TimeSpan.FromSeconds(1), hints.Timeout);
        Assert.Equal("g", hints.ResourceGroup);
    }

    [Fact]
    public void Parse_RepeatedKeyInOneComment_LaterWins()
    {
        Assert.Equal(Priority.Medium, Parse("/* mproxy: priority=low priority=medium */").Priority);
    }

    [Fact]
    public void Parse_UnknownKeysAndMalformedItems_AreCountedAndIgnored()
    {
        var hints = Parse("/* mproxy: priority=urgent colour=blue route=primary junk =x */ SELECT 1 /* mproxy: timeout=forever */");

        Assert.Equal(RouteHint.Primary, hints.Route);
        Assert.Null(hints.Priority);
        Assert.Equal(5, hints.Ignored);
        Assert.False(hints.IsEmpty);
    }

    [Fact]
    public void Parse_TrailingSqlcommenterStyleComment_IsRead()
    {
        var hints = Parse($"SELECT * FROM t WHERE id = $1 /* mproxy: traceparent='{Trace}',group='web',route='replica' */");

        Assert.Equal(Trace, hints.TraceParent);
        Assert.Equal("web", hints.ResourceGroup);
        Assert.Equal(RouteHint.Replica, hints.Route);
    }

    [Fact]
    public void Parse_EmptyMproxyComment_HasNoHints()
    {
        Assert.True(Parse("/* mproxy: */ SELECT 1").IsEmpty);
    }
}
