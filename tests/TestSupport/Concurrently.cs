namespace MProxy.TestSupport;

/// <summary>Runs code on several threads at once, for tests of what concurrent callers share.</summary>
public static class Concurrently
{
    /// <summary>
    /// Runs <paramref name="body"/> on <paramref name="count"/> threads of their own (not the thread
    /// pool's, which on a two-core machine would start them one by one), all released together, and
    /// waits for every one.
    /// </summary>
    public static void Run(int count, Action body)
    {
        ArgumentNullException.ThrowIfNull(body);
        using var start = new Barrier(count);
        var threads = Enumerable.Range(0, count).Select(_ => new Thread(() =>
        {
            start.SignalAndWait();
            body();
        })).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());
    }
}
