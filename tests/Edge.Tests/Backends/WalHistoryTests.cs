using MProxy.Edge.Backends;
using MProxy.TestSupport;

namespace MProxy.Edge.Tests.Backends;

public sealed class WalHistoryTests
{
    private static readonly TimeSpan Second = TimeSpan.FromSeconds(1);

    [Fact]
    public void Lag_NoPrimarySample_IsUnknown()
    {
        var history = new WalHistory(8);
        Assert.Null(history.LagBytes(new Lsn(5)));
        Assert.Null(history.LagTime(new Lsn(5), 0, new ManualTimeProvider()));
    }

    [Fact]
    public void Lag_ReplicaCaughtUp_IsZero()
    {
        var time = new ManualTimeProvider();
        var history = new WalHistory(8);
        history.Add(new Lsn(1000), time.GetTimestamp());
        time.Advance(Second);
        Assert.Equal(0, history.LagBytes(new Lsn(1000)));
        Assert.Equal(TimeSpan.Zero, history.LagTime(new Lsn(1000), time.GetTimestamp(), time));
        Assert.Equal(0, history.LagBytes(new Lsn(1200))); // the replica saw more than the primary's last sample
    }

    [Fact]
    public void LagTime_BusyPrimary_IsTimeSinceFirstPositionTheReplicaLacks()
    {
        var time = new ManualTimeProvider();
        var history = new WalHistory(16);
        for (var i = 1; i <= 5; i++)
        {
            history.Add(new Lsn((ulong)i * 100), time.GetTimestamp()); // t=0: 100, t=1: 200 ... t=4: 500
            time.Advance(Second);
        }
        var now = time.GetTimestamp() - TimeSpan.TicksPerSecond; // t=4, when the replica was seen

        Assert.Equal(300, history.LagBytes(new Lsn(200)));
        Assert.Equal(TimeSpan.FromSeconds(2), history.LagTime(new Lsn(250), now, time)); // 300 appeared at t=2
        Assert.Equal(TimeSpan.FromSeconds(2), history.LagTime(new Lsn(200), now, time));
        Assert.Equal(TimeSpan.FromSeconds(4), history.LagTime(new Lsn(50), now, time));
        Assert.Equal(TimeSpan.Zero, history.LagTime(new Lsn(450), now, time)); // only this round's position is missing
    }

    [Fact]
    public void LagTime_IdlePrimary_DoesNotGrow()
    {
        var time = new ManualTimeProvider();
        var history = new WalHistory(4);
        history.Add(new Lsn(100), time.GetTimestamp());
        for (var i = 0; i < 100; i++)
        {
            time.Advance(Second);
            history.Add(new Lsn(100), time.GetTimestamp()); // idle: same position every probe
        }
        Assert.Equal(1, history.Count);
        Assert.Equal(TimeSpan.Zero, history.LagTime(new Lsn(100), time.GetTimestamp(), time));
        Assert.Equal(TimeSpan.FromSeconds(100), history.LagTime(new Lsn(99), time.GetTimestamp(), time));
    }

    [Fact]
    public void Add_RingFull_KeepsNewestAndLagIsALowerBound()
    {
        var time = new ManualTimeProvider();
        var history = new WalHistory(3);
        for (var i = 1; i <= 10; i++)
        {
            history.Add(new Lsn((ulong)i), time.GetTimestamp());
            time.Advance(Second);
        }
        Assert.Equal(3, history.Count);
        // Position 1 was first seen at t=0, but only t=7.. are kept: the lag is at least 10 − 7 = 3 s.
        Assert.Equal(TimeSpan.FromSeconds(3), history.LagTime(new Lsn(0), time.GetTimestamp(), time));
    }

    [Fact]
    public void Add_PositionGoesBack_StartsOver()
    {
        var history = new WalHistory(8);
        history.Add(new Lsn(500), 1);
        history.Add(new Lsn(300), 2);
        Assert.Equal(1, history.Count);
        Assert.Equal(new Lsn(300), history.Latest);
    }
}
