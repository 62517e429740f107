using MProxy.Edge.Protocols;

namespace MProxy.Edge.Tests.Protocols;

public sealed class SharedStringsTests
{
    [Fact]
    public void Share_EqualValues_ReturnTheFirstInstance()
    {
        var pool = new SharedStrings(8);
        var first = new string("UTF8".AsSpan());
        var second = new string("UTF8".AsSpan());

        Assert.Same(first, pool.Share(first));
        Assert.Same(first, pool.Share(second));
        Assert.Equal(1, pool.Count);
    }

    [Fact]
    public void Share_PastTheCapacity_NewValuesAreReturnedAsTheyCame_KnownOnesStillShared()
    {
        var pool = new SharedStrings(2);
        var a = pool.Share(new string("a".AsSpan()));
        pool.Share("b");

        var c1 = new string("c".AsSpan());
        var c2 = new string("c".AsSpan());
        Assert.Same(c1, pool.Share(c1));
        Assert.Same(c2, pool.Share(c2)); // not kept: a client cannot grow the pool
        Assert.Equal(2, pool.Count);
        Assert.Same(a, pool.Share(new string("a".AsSpan())));
    }

    [Fact]
    public async Task Share_Concurrently_OneInstancePerValue_AndTheCountIsExact()
    {
        // Small numbers format to strings the runtime caches: racing threads often share the very
        // same instance, which must still count once. Many rounds, as races are rare in one.
        for (var round = 0; round < 50; round++)
        {
            var pool = new SharedStrings(1000);
            var results = await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => Task.Run(() =>
                Enumerable.Range(0, 200).Select(i => pool.Share(i.ToString(System.Globalization.CultureInfo.InvariantCulture))).ToArray())));

            Assert.Equal(200, pool.Count);
            for (var i = 0; i < 200; i++)
                Assert.All(results, r => Assert.Same(results[0][i], r[i]));
        }
    }
}
