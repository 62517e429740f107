using MProxy.Edge.Qos;

namespace MProxy.Edge.Tests.Qos;

public sealed class AppliedGroupSettingsTests
{
    private static readonly ResourceGroupConfig Reports = new()
    {
        Name = "reports",
        StatementTimeout = TimeSpan.FromMilliseconds(400),
        ServerSettings = [new("work_mem", "64MB"), new("jit", "off")],
    };

    private static readonly ResourceGroupConfig Std = new() { Name = "std", ServerSettings = [new("work_mem", "4MB")] };

    private static QosAdmission Admitted(ResourceGroupConfig group) => new() { Group = group, StatementTimeout = group.StatementTimeout };

    [Fact]
    public void Plan_FirstGroup_SetsItsSettingsAndTimeout_ThenTheSameGroupChangesNothing()
    {
        var applied = new AppliedGroupSettings();
        var changes = new List<KeyValuePair<string, string?>>();

        Assert.True(applied.Plan(Admitted(Reports), changes, out var timeout));
        Assert.Equal([new("work_mem", "64MB"), new("jit", "off")], changes);
        Assert.Equal(TimeSpan.FromMilliseconds(400), timeout);

        Assert.False(applied.Plan(Admitted(Reports), changes, out timeout));
        Assert.Empty(changes);
        Assert.Null(timeout);
    }

    [Fact]
    public void Plan_AnotherGroup_ChangesWhatDiffers_AndPutsBackWhatItLacks()
    {
        var applied = new AppliedGroupSettings();
        var changes = new List<KeyValuePair<string, string?>>();
        applied.Plan(Admitted(Reports), changes, out _);

        Assert.True(applied.Plan(Admitted(Std), changes, out var timeout));
        Assert.Equal([new("work_mem", "4MB"), new("jit", null)], changes);
        Assert.Equal(TimeSpan.Zero, timeout);

        // No group (QoS admitted without one): everything back to the defaults.
        Assert.True(applied.Plan(default, changes, out timeout));
        Assert.Equal([new("work_mem", null)], changes);
        Assert.Null(timeout);
    }

    [Fact]
    public void Forget_AfterAReset_TheSameGroupIsAppliedAgain()
    {
        var applied = new AppliedGroupSettings();
        var changes = new List<KeyValuePair<string, string?>>();
        applied.Plan(Admitted(Reports), changes, out _);

        applied.Forget();

        Assert.True(applied.Plan(Admitted(Reports), changes, out var timeout));
        Assert.Equal([new("work_mem", "64MB"), new("jit", "off")], changes);
        Assert.Equal(TimeSpan.FromMilliseconds(400), timeout);
    }

    [Fact]
    public void Plan_ATimeoutAlone_ChangesOnlyTheTimeout()
    {
        var applied = new AppliedGroupSettings();
        var changes = new List<KeyValuePair<string, string?>>();
        applied.Plan(Admitted(Std), changes, out _);

        // A hint shortened the timeout, same group.
        Assert.True(applied.Plan(new QosAdmission { Group = Std, StatementTimeout = TimeSpan.FromSeconds(2) }, changes, out var timeout));
        Assert.Empty(changes);
        Assert.Equal(TimeSpan.FromSeconds(2), timeout);
    }
}
