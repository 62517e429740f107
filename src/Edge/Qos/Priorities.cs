using MProxy.Abstractions;

namespace MProxy.Edge.Qos;

/// <summary>Helpers over <see cref="Priority"/>, whose larger values are lower priorities.</summary>
internal static class Priorities
{
    /// <summary>Number of priority classes; arrays indexed by <see cref="Priority"/> have this length.</summary>
    public const int Count = 3;

    /// <summary>The lower of two priorities.</summary>
    public static Priority Lower(Priority a, Priority b) => a >= b ? a : b;

    /// <summary>Whether <paramref name="candidate"/> is strictly lower than <paramref name="than"/>.</summary>
    public static bool IsLower(Priority candidate, Priority than) => candidate > than;

    /// <summary>Upper-case name for messages, without allocating.</summary>
    public static string Label(Priority priority) => priority switch
    {
        Priority.High => "HIGH",
        Priority.Medium => "MEDIUM",
        _ => "LOW",
    };

    /// <summary>The shorter of two timeouts where <see cref="TimeSpan.Zero"/> means none.</summary>
    public static TimeSpan ShorterTimeout(TimeSpan a, TimeSpan b) =>
        a == TimeSpan.Zero ? b : b == TimeSpan.Zero ? a : (a <= b ? a : b);
}
