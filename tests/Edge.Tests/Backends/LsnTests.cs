using System.Text;
using MProxy.Edge.Backends;

namespace MProxy.Edge.Tests.Backends;

public sealed class LsnTests
{
    [Theory]
    [InlineData("0/0", 0UL)]
    [InlineData("0/16B3748", 0x16B3748UL)]
    [InlineData("16/B374D848", 0x16_B374D848UL)]
    [InlineData("ffffffff/FFFFFFFF", ulong.MaxValue)]
    [InlineData("1/0", 0x1_00000000UL)]
    public void Parse_PostgresSpelling_GivesTheByteOffset(string text, ulong expected)
    {
        Assert.Equal(new Lsn(expected), Lsn.Parse(text));
        Assert.True(Lsn.TryParse(Encoding.ASCII.GetBytes(text), out var fromBytes));
        Assert.Equal(expected, fromBytes.Value);
    }

    [Theory]
    [InlineData("")]
    [InlineData("/")]
    [InlineData("0/")]
    [InlineData("/0")]
    [InlineData("0x1/0")]
    [InlineData("1/2/3")]
    [InlineData("123456789/0")]
    [InlineData("0/123456789")]
    [InlineData(" 1/0")]
    [InlineData("1/ 0")]
    [InlineData("g/0")]
    [InlineData("-1/0")]
    public void TryParse_Malformed_ReturnsFalse(string text)
    {
        Assert.False(Lsn.TryParse(text, out var lsn));
        Assert.Equal(Lsn.None, lsn);
        Assert.False(Lsn.TryParse(Encoding.ASCII.GetBytes(text), out _));
        Assert.Throws<FormatException>(() => Lsn.Parse(text));
    }

    [Theory]
    [InlineData("0/0")]
    [InlineData("0/16B3748")]
    [InlineData("16/B374D848")]
    [InlineData("FFFFFFFF/FFFFFFFF")]
    public void ToString_RoundTripsPostgresSpelling(string text) => Assert.Equal(text, Lsn.Parse(text).ToString());

    [Fact]
    public void Compare_HighHalfDominates_OrderIsNumeric()
    {
        var a = Lsn.Parse("0/FFFFFFFF");
        var b = Lsn.Parse("1/0");
        Assert.True(a < b);
        Assert.True(b > a);
        var same = Lsn.Parse("0/FFFFFFFF");
        Assert.True(a <= same && a >= same);
        Assert.Equal(-1, a.CompareTo(b));
        Assert.Equal(b, Lsn.Max(a, b));
        Assert.Equal(1, b.BytesAfter(a));
        Assert.Equal(0, a.BytesAfter(b));
    }

    [Fact]
    public void None_IsZeroAndBelowEveryPosition()
    {
        Assert.True(Lsn.None.IsNone);
        Assert.True(Lsn.None < Lsn.Parse("0/1"));
        Assert.False(Lsn.Parse("0/1").IsNone);
    }
}
