using MProxy.Edge.Protocols.Postgres;

namespace MProxy.Edge.Tests.Protocols.Postgres;

public sealed class PgTrackedParametersTests
{
    [Fact]
    public void ParseOptions_DashCAndDoubleDashForms_WithEscapedSpaces()
    {
        var options = PgTrackedParameters.ParseOptions(@"-c search_path=a\ b --application-name=x -cTimeZone=UTC");
        Assert.Equal(
            [new("search_path", "a b"), new("application_name", "x"), new("TimeZone", "UTC")],
            options);
    }

    [Theory]
    [InlineData("-c")]
    [InlineData("statement_timeout=5")]
    [InlineData("-c novalue")]
    public void ParseOptions_Malformed_Throws(string options) =>
        Assert.Throws<FormatException>(() => PgTrackedParameters.ParseOptions(options));

    [Theory]
    [InlineData("plain", "'plain'")]
    [InlineData("it's", "'it''s'")]
    [InlineData(@"back\slash", @"E'back\\slash'")]
    [InlineData(@"both'\", @"E'both''\\'")]
    public void QuoteLiteral_ReadsBackVerbatim(string value, string expected) =>
        Assert.Equal(expected, PgTrackedParameters.QuoteLiteral(value));

    [Fact]
    public void NamedIndexes_PointAtTheirNames()
    {
        Assert.Equal("application_name", PgTrackedParameters.Names[PgTrackedParameters.ApplicationName]);
        Assert.Equal("standard_conforming_strings", PgTrackedParameters.Names[PgTrackedParameters.StandardConformingStrings]);
    }

    [Fact]
    public void Share_ValuesFromDifferentSources_AreOneInstance_SoBuildSyncComparesReferences()
    {
        var client = new string?[PgTrackedParameters.Count];
        var server = new string?[PgTrackedParameters.Count];
        var zone = PgTrackedParameters.IndexOf("TimeZone");
        client[zone] = PgTrackedParameters.Share(new string("Europe/Zurich".AsSpan()));
        server[zone] = PgTrackedParameters.Share(new string("Europe/Zurich".AsSpan()));

        Assert.Same(client[zone], server[zone]);
        Assert.Null(PgTrackedParameters.BuildSync(client, server));
    }

    [Fact]
    public void BuildSync_EqualValues_ReturnsNull()
    {
        var values = new string?[PgTrackedParameters.Count];
        values[PgTrackedParameters.IndexOf("TimeZone")] = "UTC";
        Assert.Null(PgTrackedParameters.BuildSync(values, (string?[])values.Clone()));
    }

    [Fact]
    public void BuildSync_SetsDifferingAndResetsDefaulted()
    {
        var client = new string?[PgTrackedParameters.Count];
        var server = new string?[PgTrackedParameters.Count];
        client[PgTrackedParameters.IndexOf("timezone")] = "Asia/Tokyo";
        server[PgTrackedParameters.IndexOf("TimeZone")] = "UTC";
        server[PgTrackedParameters.IndexOf("search_path")] = "other";
        Assert.Equal("SET TimeZone TO 'Asia/Tokyo';RESET search_path;", PgTrackedParameters.BuildSync(client, server));
    }

    [Fact]
    public void IndexOf_IsCaseInsensitive_AndUnknownIsMinusOne()
    {
        Assert.Equal(PgTrackedParameters.IndexOf("DateStyle"), PgTrackedParameters.IndexOf("datestyle"));
        Assert.Equal(-1, PgTrackedParameters.IndexOf("work_mem"));
    }
}
