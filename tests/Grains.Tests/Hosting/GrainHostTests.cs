using MProxy.Grains.Hosting;
using MProxy.Grains.Storage;
using MProxy.TestSupport;

namespace MProxy.Grains.Tests.Hosting;

public sealed class GrainHostTests
{
    [Fact]
    public async Task CallAsync_FirstCall_ActivatesGrainAndPersistsState()
    {
        var time = new ManualTimeProvider();
        var store = new InMemoryGrainStore();
        await using var host = new GrainHost(store, time);
        var counter = new CounterGrain(host, "k");
        Assert.False(host.IsActive(counter.Key));

        Assert.Equal(1, await counter.IncrementAsync(TestContext.Current.CancellationToken));

        Assert.True(host.IsActive(counter.Key));
        var stored = await store.ReadAsync(counter.Key, TestContext.Current.CancellationToken);
        Assert.Equal(1, stored!.Version);
        Assert.Equal(time.GetUtcNow(), stored.UpdatedAt);
    }

    [Fact]
    public async Task Collect_IdleGrain_IsDeactivatedAndItsStateSurvives()
    {
        var time = new ManualTimeProvider();
        await using var host = new GrainHost(new InMemoryGrainStore(), time, options: new GrainHostOptions { IdleTimeout = TimeSpan.FromMinutes(1), CollectionInterval = TimeSpan.FromSeconds(10) });
        var counter = new CounterGrain(host, "k");
        await counter.IncrementAsync(TestContext.Current.CancellationToken);
        await counter.IncrementAsync(TestContext.Current.CancellationToken);

        time.Advance(TimeSpan.FromSeconds(50));
        Assert.True(host.IsActive(counter.Key));
        time.Advance(TimeSpan.FromSeconds(20)); // the collector's timer fires past the idle timeout

        Assert.False(host.IsActive(counter.Key));
        Assert.Equal(3, await counter.IncrementAsync(TestContext.Current.CancellationToken));
    }

    [Fact]
    public async Task CallAsync_UnchangedState_WritesNothing()
    {
        var store = new InMemoryGrainStore();
        await using var host = new GrainHost(store, new ManualTimeProvider());
        var counter = new CounterGrain(host, "k");
        await counter.IncrementAsync(TestContext.Current.CancellationToken);

        Assert.Equal(1, await counter.PeekAsync(TestContext.Current.CancellationToken));

        Assert.Equal(1, (await store.ReadAsync(counter.Key, TestContext.Current.CancellationToken))!.Version);
    }

    [Fact]
    public async Task CallAsync_ManyConcurrentCallsOnTwoHostsSharingAStore_RunOneAtATimeAndLoseNothing()
    {
        var store = new InMemoryGrainStore();
        var time = new ManualTimeProvider();
        await using var first = new GrainHost(store, time);
        await using var second = new GrainHost(store, time);
        var probe = new OverlapProbe();

        var calls = new List<Task<long>>();
        for (var i = 0; i < 200; i++)
            calls.Add(Task.Run(() => new CounterGrain(i % 2 == 0 ? first : second, "shared", probe).IncrementAsync(), TestContext.Current.CancellationToken));
        var results = await Task.WhenAll(calls);

        Assert.Equal(Enumerable.Range(1, 200).Select(i => (long)i), results.Order());
        Assert.Equal(1, probe.MaxOverlap);
    }

    [Fact]
    public async Task CallAsync_AnotherHostWroteTheGrain_StaleCacheIsNotUsed()
    {
        var store = new InMemoryGrainStore();
        var time = new ManualTimeProvider();
        await using var first = new GrainHost(store, time);
        await using var second = new GrainHost(store, time);

        await new CounterGrain(first, "k").IncrementAsync(TestContext.Current.CancellationToken);
        await new CounterGrain(second, "k").IncrementAsync(TestContext.Current.CancellationToken);

        Assert.Equal(3, await new CounterGrain(first, "k").IncrementAsync(TestContext.Current.CancellationToken));
    }

    [Fact]
    public async Task CallAsync_LogicThrows_NothingIsWrittenAndGrainStaysUsable()
    {
        var store = new InMemoryGrainStore();
        await using var host = new GrainHost(store, new ManualTimeProvider());
        var counter = new CounterGrain(host, "k");
        await counter.IncrementAsync(TestContext.Current.CancellationToken);

        await Assert.ThrowsAsync<InvalidOperationException>(() => host.CallAsync<CounterState, int>(counter.Key, CounterJsonContext.Default.CounterState,
            (_, _) => throw new InvalidOperationException("boom"), TestContext.Current.CancellationToken));

        Assert.Equal(2, await counter.IncrementAsync(TestContext.Current.CancellationToken));
    }
}
