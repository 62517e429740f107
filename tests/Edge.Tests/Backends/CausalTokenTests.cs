using MProxy.Edge.Backends;

namespace MProxy.Edge.Tests.Backends;

public sealed class CausalTokenTests
{
    [Fact]
    public void IsVisibleAt_ReplayAtOrPastToken_True()
    {
        var token = new CausalToken(Lsn.Parse("0/5000"), 10);
        Assert.False(token.IsVisibleAt(Lsn.Parse("0/4FFF")));
        Assert.True(token.IsVisibleAt(Lsn.Parse("0/5000")));
        Assert.True(token.IsVisibleAt(Lsn.Parse("1/0")));
        Assert.True(CausalToken.None.IsVisibleAt(Lsn.None));
    }

    [Fact]
    public void After_OlderWrite_NeverMovesTokenBack()
    {
        var token = CausalToken.None.After(Lsn.Parse("0/5000"), 100);
        var later = token.After(Lsn.Parse("0/4000"), 90);
        Assert.Equal(new CausalToken(Lsn.Parse("0/5000"), 100), later);
        Assert.False(later.IsNone);
        Assert.True(CausalToken.None.IsNone);
    }

    [Fact]
    public void Table_AdvanceFromManyThreads_KeepsTheMaximum()
    {
        var table = new CausalTokenTable();
        Parallel.For(1, 2001, i => table.Advance("acme", new CausalToken(new Lsn((ulong)i), i)));
        Assert.Equal(new CausalToken(new Lsn(2000), 2000), table.Get("acme"));
        Assert.Equal(CausalToken.None, table.Get("other"));
    }

    [Fact]
    public void Table_Prune_DropsOnlyOldKeys()
    {
        var table = new CausalTokenTable();
        table.Advance("old", new CausalToken(new Lsn(1), 10));
        table.Advance("new", new CausalToken(new Lsn(2), 50));
        table.Prune(olderThan: 20);
        Assert.Equal(CausalToken.None, table.Get("old"));
        Assert.Equal(new CausalToken(new Lsn(2), 50), table.Get("new"));
        Assert.Equal(1, table.Count);
    }

    [Fact]
    public void Table_Get_DoesNotAllocate()
    {
        var table = new CausalTokenTable();
        table.Advance("acme", new CausalToken(new Lsn(7), 1));
        table.Get("acme");
        var before = GC.GetAllocatedBytesForCurrentThread();
        var sum = 0UL;
        for (var i = 0; i < 100; i++)
            sum += table.Get("acme").Lsn.Value;
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
        Assert.Equal(700UL, sum);
    }
}
