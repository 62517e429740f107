using MProxy.Grains.Leasing;

namespace MProxy.Grains.Tests.Leasing;

public sealed class FairShareTests
{
    [Fact]
    public void Allocate_ModestAndGreedyClaimants_GreedyShareWhatModestLeave()
    {
        var result = FairShare.Allocate(100, [10, 200, 200]);

        Assert.Equal(10, result[0], 6);
        Assert.Equal(45, result[1], 6);
        Assert.Equal(45, result[2], 6);
    }

    [Fact]
    public void Allocate_SurplusAfterAllWantsMet_IsHandedOutInProportion()
    {
        var result = FairShare.Allocate(100, [10, 30]);

        Assert.Equal(25, result[0], 6);
        Assert.Equal(75, result[1], 6);
    }

    [Fact]
    public void AllocateSlots_MoreWantedThanLimit_SumsToLimitAndEachGetsFairFloor()
    {
        var result = FairShare.AllocateSlots(10, [8, 8, 8]);

        Assert.Equal(10, result.Sum());
        Assert.All(result, r => Assert.InRange(r, 3, 4));
    }

    [Fact]
    public void AllocateSlots_FewerWantedThanLimit_NoSurplusHandedOut()
    {
        var result = FairShare.AllocateSlots(10, [1, 2]);

        Assert.Equal([1, 2], result);
    }
}
