using MProxy.Edge.Hosting;

namespace MProxy.Edge.Tests.Hosting;

public sealed class HangupSignalTests
{
    // Lines as Linux prints them in /proc/<pid>/status; SIGHUP is bit 0 of the hexadecimal masks.
    private static string[] Status(string sigIgn) =>
        ["Name:\tdotnet", "SigPnd:\t0000000000000000", "SigBlk:\t0000000000000000", $"SigIgn:\t{sigIgn}", "SigCgt:\t0000000180004a02"];

    [Theory]
    [InlineData("0000000000000001", true)]   // nohup: SIGHUP alone ignored
    [InlineData("0000000000001001", true)]   // SIGHUP and SIGPIPE ignored
    [InlineData("0000000000001000", false)]  // SIGPIPE alone (what the runtime ignores itself)
    [InlineData("0000000000000000", false)]
    [InlineData("fffffffffffffffe", false)]  // everything but SIGHUP
    public void SigIgnMask_SaysWhetherHangupIsIgnored(string mask, bool ignored) =>
        Assert.Equal(ignored, HangupSignal.IsIgnoredIn(Status(mask)));

    [Fact]
    public void NoSigIgnLine_NotIgnored() =>
        Assert.False(HangupSignal.IsIgnoredIn(["Name:\tdotnet", "SigCgt:\t0000000000000001"]));

    [Fact]
    public void UnreadableMask_NotIgnored() =>
        Assert.False(HangupSignal.IsIgnoredIn(["SigIgn:\tnot-hex"]));
}
