using System.Collections.Concurrent;

namespace MProxy.Edge.Protocols;

/// <summary>
/// A bounded pool of string instances: <see cref="Share"/> returns one instance per distinct value,
/// so that values stored from it compare by reference. Unlike <see cref="string.Intern"/> it holds
/// at most <c>capacity</c> values (values that clients choose must not grow the process without
/// bound); past that it returns a value as it came. Thread-safe.
/// </summary>
internal sealed class SharedStrings(int capacity)
{
    private readonly ConcurrentDictionary<string, string> _values = new(StringComparer.Ordinal);
    private int _count;

    /// <summary>Distinct values held.</summary>
    public int Count => Volatile.Read(ref _count);

    /// <summary>The shared instance equal to <paramref name="value"/>, or <paramref name="value"/> itself when it is new and the pool is full.</summary>
    public string Share(string value)
    {
        if (_values.TryGetValue(value, out var shared))
            return shared;
        if (Interlocked.Increment(ref _count) > capacity)
        {
            Interlocked.Decrement(ref _count);
            return value;
        }
        if (_values.TryAdd(value, value))
            return value;
        // Another thread added it first (maybe with this very instance: the runtime caches some
        // strings, so comparing references cannot tell whose add it was).
        Interlocked.Decrement(ref _count);
        return _values.TryGetValue(value, out shared) ? shared : value;
    }
}
