using MProxy.Abstractions.ResourceUnits;

namespace MProxy.Abstractions.Tests.ResourceUnits;

public sealed class RuFormulaTests
{
    private const double Tolerance = 1e-9;

    [Fact]
    public void Read_DefaultWeights_PointSelectCostsBetweenOneAndTwo()
    {
        var ru = RuFormula.Read(RuWeights.Default, bytesRead: 150, latencyMs: 1);

        Assert.InRange(ru, 1.0, 2.0);
        Assert.Equal(1 + 150.0 / 4096 + 0.5, ru, Tolerance);
    }

    [Fact]
    public void Read_DefaultWeights_EightKiBRowCostsAFewRu()
    {
        var ru = RuFormula.Read(RuWeights.Default, bytesRead: 8192, latencyMs: 2);

        Assert.Equal(4.0, ru, Tolerance);
    }

    [Fact]
    public void Write_DefaultWeights_BaseIsSixPlusPer4KiBAndLatency()
    {
        var ru = RuFormula.Write(RuWeights.Default, bytesWritten: 8192, latencyMs: 3);

        Assert.Equal(6 + 2 * 2 + 1.5, ru, Tolerance);
    }

    [Fact]
    public void Read_CustomWeights_AppliesEachWeight()
    {
        var weights = new RuWeights { ReadBase = 2, ReadPerByte = 0.01, LatencyPerMs = 3 };

        Assert.Equal(2 + 0.01 * 100 + 3 * 4, RuFormula.Read(weights, 100, 4), Tolerance);
    }

    [Fact]
    public void Cost_NothingWritten_EqualsReadFormula()
    {
        var weights = new RuWeights { ReadPerByte = 0.003, LatencyPerMs = 0.7 };

        Assert.Equal(RuFormula.Read(weights, 12_345, 17.5), RuFormula.Cost(weights, RuKind.Read, 12_345, 0, 17.5), Tolerance);
    }

    [Fact]
    public void Cost_NothingRead_EqualsWriteFormula()
    {
        var weights = new RuWeights { WritePer4KiB = 5, LatencyPerMs = 0.1 };

        Assert.Equal(RuFormula.Write(weights, 40_000, 9), RuFormula.Cost(weights, RuKind.Write, 0, 40_000, 9), Tolerance);
    }

    [Fact]
    public void Cost_WriteReturningRows_PaysForBothDirections()
    {
        var w = RuWeights.Default;

        var ru = RuFormula.Cost(w, RuKind.Write, bytesRead: 4096, bytesWritten: 4096, latencyMs: 0);

        Assert.Equal(6 + 1 + 2, ru, Tolerance);
    }

    [Fact]
    public void FirstInvalid_NegativeOrNaNWeight_NamesIt()
    {
        Assert.Null(RuWeights.Default.FirstInvalid());
        Assert.Equal(nameof(RuWeights.LatencyPerMs), new RuWeights { LatencyPerMs = -1 }.FirstInvalid());
        Assert.Equal(nameof(RuWeights.ReadPerByte), new RuWeights { ReadPerByte = double.NaN }.FirstInvalid());
        Assert.Equal(nameof(RuWeights.WriteBase), new RuWeights { WriteBase = double.PositiveInfinity }.FirstInvalid());
    }
}
