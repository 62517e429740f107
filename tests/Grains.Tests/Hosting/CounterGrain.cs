using System.Text.Json.Serialization;
using MProxy.Grains.Hosting;

namespace MProxy.Grains.Tests.Hosting;

/// <summary>A minimal grain for host and store tests: increments a count, and notices overlapping calls.</summary>
public sealed record CounterState(long Count);

[JsonSerializable(typeof(CounterState))]
internal sealed partial class CounterJsonContext : JsonSerializerContext;

/// <summary>Counts calls running inside grain logic at once.</summary>
internal sealed class OverlapProbe
{
    private int _inFlight;
    private int _max;

    public int MaxOverlap => Volatile.Read(ref _max);

    public void Enter()
    {
        var now = Interlocked.Increment(ref _inFlight);
        int seen;
        while (now > (seen = Volatile.Read(ref _max)) && Interlocked.CompareExchange(ref _max, now, seen) != seen)
        {
        }
    }

    public void Leave() => Interlocked.Decrement(ref _inFlight);
}

internal sealed class CounterGrain(GrainHost host, string key, OverlapProbe? probe = null)
{
    public GrainKey Key { get; } = new("counter", key);

    public Task<long> IncrementAsync(CancellationToken cancellationToken = default) =>
        host.CallAsync(Key, CounterJsonContext.Default.CounterState, (state, _) =>
        {
            probe?.Enter();
            Thread.SpinWait(2000);
            var next = new CounterState((state?.Count ?? 0) + 1);
            probe?.Leave();
            return (next, next.Count);
        }, cancellationToken);

    public Task<long> PeekAsync(CancellationToken cancellationToken = default) =>
        host.CallAsync(Key, CounterJsonContext.Default.CounterState, (state, _) => (state!, state?.Count ?? 0), cancellationToken);
}
