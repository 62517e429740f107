using System.Diagnostics;

namespace MProxy.TestSupport;

/// <summary>Waits, in real time, for a condition that another thread makes true.</summary>
public static class Poll
{
    /// <summary>The default limit: long enough for a loaded CI machine, short enough to fail a hung test.</summary>
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(10);

    /// <summary>Returns once <paramref name="condition"/> holds; throws <see cref="TimeoutException"/> naming <paramref name="what"/> when it has not within <paramref name="timeout"/>.</summary>
    public static async Task UntilAsync(Func<bool> condition, string what = "condition", TimeSpan? timeout = null)
    {
        var limit = timeout ?? DefaultTimeout;
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            if (clock.Elapsed > limit)
                throw new TimeoutException($"{what}: not met within {limit.TotalSeconds:0.#} s");
            await Task.Delay(5);
        }
    }
}
