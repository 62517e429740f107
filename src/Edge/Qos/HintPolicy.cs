using MProxy.Abstractions;
using MProxy.Edge.Routing;

namespace MProxy.Edge.Qos;

/// <summary>
/// What a query runs with after its hints: which of the tenant's groups (index into the array given
/// to <see cref="IHintPolicy.Apply"/>; 0 is the home group), its priority and its statement timeout
/// (<see cref="TimeSpan.Zero"/>: none).
/// </summary>
internal readonly record struct HintDecision(int Group, Priority Priority, TimeSpan Timeout);

/// <summary>
/// Applies a query's magic-comment hints to its tenant's configuration. One decision method, chosen
/// by name (<see cref="HintPolicyNames"/>) from <c>qos.hintPolicy</c>.
/// </summary>
internal interface IHintPolicy
{
    string Name { get; }

    /// <summary>
    /// <paramref name="groups"/>[0] is the tenant's home group; the others are the groups a hint may
    /// switch to (the tenant's allowed groups and the home group's alternatives).
    /// </summary>
    HintDecision Apply(in QueryHints hints, ResourceGroupConfig[] groups);
}

/// <summary>The built-in hint policies.</summary>
internal static class HintPolicyNames
{
    /// <summary>Hints may lower the priority, shorten the timeout and pick an allowed group; nothing else (default).</summary>
    public const string Narrowing = "narrowing";

    /// <summary>Hints are counted and ignored.</summary>
    public const string Ignore = "ignore";

    public static IHintPolicy Create(string name, HintCounters counters) => name switch
    {
        Narrowing => new NarrowingHintPolicy(counters),
        Ignore => new IgnoreHintPolicy(counters),
        _ => throw new ArgumentOutOfRangeException(nameof(name), name, "unknown hint policy"),
    };

    /// <summary>The decision without hints: home group, its priority and timeout.</summary>
    internal static HintDecision Home(ResourceGroupConfig[] groups) => new(0, groups[0].Priority, groups[0].StatementTimeout);
}

/// <summary>How hints were applied, for metrics. Thread-safe (interlocked counters); reading is a snapshot per counter.</summary>
internal sealed class HintCounters
{
    private long _applied;
    private long _priorityRaise;
    private long _timeoutExtend;
    private long _invalid;
    private long _groupNotAllowed;
    private long _malformed;
    private long _ignoredByPolicy;

    /// <summary>Hint items that changed what the query runs with.</summary>
    public long Applied => Volatile.Read(ref _applied);

    /// <summary>Priority hints above the ceiling (ignored).</summary>
    public long PriorityRaiseIgnored => Volatile.Read(ref _priorityRaise);

    /// <summary>Timeout hints longer than the configured timeout (ignored).</summary>
    public long TimeoutExtendIgnored => Volatile.Read(ref _timeoutExtend);

    /// <summary>Zero or negative timeouts (ignored).</summary>
    public long InvalidIgnored => Volatile.Read(ref _invalid);

    /// <summary>Resource-group hints naming a group the tenant may not use (ignored).</summary>
    public long GroupNotAllowedIgnored => Volatile.Read(ref _groupNotAllowed);

    /// <summary>Hint items the parser could not read (<see cref="QueryHints.Ignored"/>).</summary>
    public long Malformed => Volatile.Read(ref _malformed);

    /// <summary>Hint items dropped because the policy ignores hints.</summary>
    public long IgnoredByPolicy => Volatile.Read(ref _ignoredByPolicy);

    /// <summary>Every ignored hint item, whatever the reason.</summary>
    public long Ignored => PriorityRaiseIgnored + TimeoutExtendIgnored + InvalidIgnored + GroupNotAllowedIgnored + Malformed + IgnoredByPolicy;

    internal void CountApplied() => Interlocked.Increment(ref _applied);

    internal void CountPriorityRaise() => Interlocked.Increment(ref _priorityRaise);

    internal void CountTimeoutExtend() => Interlocked.Increment(ref _timeoutExtend);

    internal void CountInvalid() => Interlocked.Increment(ref _invalid);

    internal void CountGroupNotAllowed() => Interlocked.Increment(ref _groupNotAllowed);

    internal void CountMalformed(int items)
    {
        if (items > 0)
            Interlocked.Add(ref _malformed, items);
    }

    internal void CountIgnoredByPolicy(int items)
    {
        if (items > 0)
            Interlocked.Add(ref _ignoredByPolicy, items);
    }
}

/// <summary>
/// Hints narrow, never widen: a group hint is honoured only for a group the tenant may use; the
/// priority is at most the lower of the home group's and the chosen group's, and a priority hint may
/// only lower it; the timeout is at most the shorter of the two groups' timeouts, and a timeout hint
/// may only shorten it. (Switching group moves the query to that group's bucket, concurrency cap and
/// server settings — separate allowances the operator granted — but never above the home group's
/// priority or timeout.) Everything else is ignored and counted. Stateless apart from its counters;
/// thread-safe; allocation-free.
/// </summary>
internal sealed class NarrowingHintPolicy(HintCounters counters) : IHintPolicy
{
    public string Name => HintPolicyNames.Narrowing;

    public HintDecision Apply(in QueryHints hints, ResourceGroupConfig[] groups)
    {
        counters.CountMalformed(hints.Ignored);
        var home = groups[0];
        var index = 0;
        if (hints.ResourceGroup is { } requested && !string.Equals(requested, home.Name, StringComparison.Ordinal))
        {
            for (var i = 1; i < groups.Length; i++)
            {
                if (string.Equals(requested, groups[i].Name, StringComparison.Ordinal))
                {
                    index = i;
                    break;
                }
            }
            if (index == 0)
                counters.CountGroupNotAllowed();
            else
                counters.CountApplied();
        }
        var group = groups[index];

        var priority = Priorities.Lower(home.Priority, group.Priority);
        if (hints.Priority is { } wanted)
        {
            if (Priorities.IsLower(wanted, priority))
            {
                priority = wanted;
                counters.CountApplied();
            }
            else if (wanted != priority)
            {
                counters.CountPriorityRaise();
            }
        }

        var timeout = Priorities.ShorterTimeout(home.StatementTimeout, group.StatementTimeout);
        if (hints.Timeout is { } requestedTimeout)
        {
            if (requestedTimeout <= TimeSpan.Zero)
            {
                counters.CountInvalid();
            }
            else if (timeout == TimeSpan.Zero || requestedTimeout < timeout)
            {
                timeout = requestedTimeout;
                counters.CountApplied();
            }
            else if (requestedTimeout != timeout)
            {
                counters.CountTimeoutExtend();
            }
        }
        return new HintDecision(index, priority, timeout);
    }
}

/// <summary>Ignores every hint (counted), for operators who do not want clients to steer QoS at all.</summary>
internal sealed class IgnoreHintPolicy(HintCounters counters) : IHintPolicy
{
    public string Name => HintPolicyNames.Ignore;

    public HintDecision Apply(in QueryHints hints, ResourceGroupConfig[] groups)
    {
        var items = (hints.Priority is null ? 0 : 1) + (hints.Timeout is null ? 0 : 1) + (hints.ResourceGroup is null ? 0 : 1);
        counters.CountIgnoredByPolicy(items);
        counters.CountMalformed(hints.Ignored);
        return HintPolicyNames.Home(groups);
    }
}
