using MProxy.Abstractions;
using MProxy.Edge.Qos;
using MProxy.Edge.Routing;

namespace MProxy.Edge.Tests.Qos;

public sealed class HintPolicyTests
{
    private static readonly Priority?[] HintPriorities = [null, Priority.High, Priority.Medium, Priority.Low];
    private static readonly TimeSpan?[] HintTimeouts =
    [
        null, TimeSpan.FromSeconds(-1), TimeSpan.Zero, TimeSpan.FromMilliseconds(1), TimeSpan.FromSeconds(2),
        TimeSpan.FromSeconds(5), TimeSpan.FromSeconds(10), TimeSpan.FromHours(1), TimeSpan.MaxValue,
    ];
    private static readonly string?[] HintGroups = [null, "home", "alt", "forbidden", "nonexistent", "HOME", ""];
    private static readonly TimeSpan[] GroupTimeouts = [TimeSpan.Zero, TimeSpan.FromSeconds(2), TimeSpan.FromSeconds(5), TimeSpan.FromSeconds(10)];

    [Fact]
    public void Apply_EveryHintAgainstEveryConfiguration_NeverRaisesALimit()
    {
        var counters = new HintCounters();
        var policy = new NarrowingHintPolicy(counters);
        var cases = 0;
        foreach (var homePriority in Enum.GetValues<Priority>())
        foreach (var homeTimeout in GroupTimeouts)
        foreach (var altPriority in Enum.GetValues<Priority>())
        foreach (var altTimeout in GroupTimeouts)
        {
            var home = new ResourceGroupConfig { Name = "home", Priority = homePriority, StatementTimeout = homeTimeout };
            var alt = new ResourceGroupConfig { Name = "alt", Priority = altPriority, StatementTimeout = altTimeout };
            ResourceGroupConfig[] groups = [home, alt]; // "forbidden" exists in the configuration but is not the tenant's
            foreach (var hintPriority in HintPriorities)
            foreach (var hintTimeout in HintTimeouts)
            foreach (var hintGroup in HintGroups)
            {
                var hints = new QueryHints { Priority = hintPriority, Timeout = hintTimeout, ResourceGroup = hintGroup };
                var decision = policy.Apply(hints, groups);
                cases++;

                var chosen = groups[decision.Group];
                Assert.Equal(hintGroup == "alt" ? 1 : 0, decision.Group);
                // Priority: never above the home group's nor the chosen group's.
                Assert.True(decision.Priority >= homePriority, $"priority {decision.Priority} above home {homePriority} for {hints}");
                Assert.True(decision.Priority >= chosen.Priority, $"priority {decision.Priority} above group {chosen.Priority} for {hints}");
                // A lower priority hint is honoured.
                var ceiling = Priorities.Lower(homePriority, chosen.Priority);
                Assert.Equal(hintPriority is { } p && p > ceiling ? p : ceiling, decision.Priority);
                // Timeout: never longer than either group's, never removed where one is set.
                AssertNotLonger(homeTimeout, decision.Timeout, hints);
                AssertNotLonger(chosen.StatementTimeout, decision.Timeout, hints);
                Assert.True(decision.Timeout >= TimeSpan.Zero);
                var limit = Priorities.ShorterTimeout(homeTimeout, chosen.StatementTimeout);
                var expected = hintTimeout is { } t && t > TimeSpan.Zero && (limit == TimeSpan.Zero || t < limit) ? t : limit;
                Assert.Equal(expected, decision.Timeout);
            }
        }
        Assert.Equal(3 * 4 * 3 * 4 * 4 * 9 * 7, cases);
    }

    private static void AssertNotLonger(TimeSpan limit, TimeSpan actual, QueryHints hints)
    {
        if (limit == TimeSpan.Zero)
            return;
        Assert.True(actual != TimeSpan.Zero && actual <= limit, $"timeout {actual} exceeds {limit} for {hints}");
    }

    [Fact]
    public void Apply_EachKindOfIgnoredHint_IsCountedByReason()
    {
        var counters = new HintCounters();
        var policy = new NarrowingHintPolicy(counters);
        ResourceGroupConfig[] groups =
        [
            new() { Name = "home", Priority = Priority.Medium, StatementTimeout = TimeSpan.FromSeconds(5) },
            new() { Name = "alt", Priority = Priority.Low },
        ];

        policy.Apply(new QueryHints { Priority = Priority.High }, groups);
        policy.Apply(new QueryHints { Timeout = TimeSpan.FromSeconds(6) }, groups);
        policy.Apply(new QueryHints { Timeout = TimeSpan.Zero }, groups);
        policy.Apply(new QueryHints { ResourceGroup = "other" }, groups);
        policy.Apply(new QueryHints { Ignored = 3 }, groups);

        Assert.Equal(1, counters.PriorityRaiseIgnored);
        Assert.Equal(1, counters.TimeoutExtendIgnored);
        Assert.Equal(1, counters.InvalidIgnored);
        Assert.Equal(1, counters.GroupNotAllowedIgnored);
        Assert.Equal(3, counters.Malformed);
        Assert.Equal(7, counters.Ignored);
        Assert.Equal(0, counters.Applied);
    }

    [Fact]
    public void Apply_NarrowingHints_AreAppliedAndCounted()
    {
        var counters = new HintCounters();
        var policy = new NarrowingHintPolicy(counters);
        ResourceGroupConfig[] groups =
        [
            new() { Name = "home", Priority = Priority.High, StatementTimeout = TimeSpan.FromSeconds(30) },
            new() { Name = "batch", Priority = Priority.Low, StatementTimeout = TimeSpan.FromMinutes(10) },
        ];

        var decision = policy.Apply(new QueryHints { Priority = Priority.Medium, Timeout = TimeSpan.FromSeconds(3) }, groups);
        Assert.Equal(new HintDecision(0, Priority.Medium, TimeSpan.FromSeconds(3)), decision);

        var batch = policy.Apply(new QueryHints { ResourceGroup = "batch" }, groups);
        Assert.Equal(new HintDecision(1, Priority.Low, TimeSpan.FromSeconds(30)), batch);

        Assert.Equal(3, counters.Applied);
        Assert.Equal(0, counters.Ignored);
    }

    [Fact]
    public void Apply_IgnorePolicy_ReturnsTheHomeGroupAndCountsEveryItem()
    {
        var counters = new HintCounters();
        var policy = HintPolicyNames.Create(HintPolicyNames.Ignore, counters);
        ResourceGroupConfig[] groups =
        [
            new() { Name = "home", Priority = Priority.Medium, StatementTimeout = TimeSpan.FromSeconds(5) },
            new() { Name = "alt", Priority = Priority.Low },
        ];

        var decision = policy.Apply(new QueryHints { Priority = Priority.Low, Timeout = TimeSpan.FromSeconds(1), ResourceGroup = "alt", Ignored = 1 }, groups);

        Assert.Equal(HintPolicyNames.Ignore, policy.Name);
        Assert.Equal(new HintDecision(0, Priority.Medium, TimeSpan.FromSeconds(5)), decision);
        Assert.Equal(3, counters.IgnoredByPolicy);
        Assert.Equal(1, counters.Malformed);
    }

    [Fact]
    public void Create_UnknownName_Throws()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => HintPolicyNames.Create("widening", new HintCounters()));
        Assert.Equal(HintPolicyNames.Narrowing, HintPolicyNames.Create(HintPolicyNames.Narrowing, new HintCounters()).Name);
    }
}
