using MProxy.Simulation.World;

namespace MProxy.Simulation.Tests;

/// <summary>
/// What CI runs: a fixed range of seeds (every scenario kind many times over), split across two
/// test classes so that xunit runs the halves in parallel; the first seeds of every scenario kind
/// twice, comparing trace hashes; and the seeds that once failed, as regression tests. A failure
/// prints the seed's options, the violation, the end of its trace and the command that replays it.
/// </summary>
internal static class CiSeeds
{
    /// <summary>Seeds 1..Count run in CI (about two to three minutes on an idle two-core machine).</summary>
    public const int Count = 240;

    public static TheoryData<ulong> Half(int half)
    {
        var data = new TheoryData<ulong>();
        for (var seed = 1UL + (ulong)half; seed <= Count; seed += 2)
            data.Add(seed);
        return data;
    }

    public static void AssertPasses(ulong seed, ITestOutputHelper output)
    {
        var result = SimWorld.Run(seed);
        output.WriteLine(result.Summary());
        Assert.True(result.Passed, result.Report());
    }
}

public sealed class SimulationOddSeedTests(ITestOutputHelper output)
{
    public static TheoryData<ulong> Seeds => CiSeeds.Half(0);

    [Theory]
    [MemberData(nameof(Seeds))]
    public void Run_Seed_AllInvariantsHold(ulong seed) => CiSeeds.AssertPasses(seed, output);
}

public sealed class SimulationEvenSeedTests(ITestOutputHelper output)
{
    public static TheoryData<ulong> Seeds => CiSeeds.Half(1);

    [Theory]
    [MemberData(nameof(Seeds))]
    public void Run_Seed_AllInvariantsHold(ulong seed) => CiSeeds.AssertPasses(seed, output);
}

public sealed class SimulationDeterminismTests(ITestOutputHelper output)
{
    /// <summary>One seed of every scenario kind (seed mod 8 picks the kind).</summary>
    [Theory]
    [InlineData(1UL)]
    [InlineData(2UL)]
    [InlineData(3UL)]
    [InlineData(4UL)]
    [InlineData(5UL)]
    [InlineData(6UL)]
    [InlineData(7UL)]
    [InlineData(8UL)]
    public void Run_SameSeedTwice_SameTraceHash(ulong seed)
    {
        var first = SimWorld.Run(seed);
        var second = SimWorld.Run(seed);
        output.WriteLine(first.Summary());
        Assert.True(first.TraceLines > 1000, $"seed {seed}: only {first.TraceLines} trace lines");
        Assert.Equal(first.TraceLines, second.TraceLines);
        Assert.Equal(first.TraceHash, second.TraceHash);
    }

    [Fact]
    public void Run_DifferentSeeds_DifferentTraces()
    {
        Assert.NotEqual(SimWorld.Run(9).TraceHash, SimWorld.Run(17).TraceHash);
    }
}

/// <summary>Seeds that failed once (see the README's list of what they found); each must pass from now on.</summary>
public sealed class SimulationRegressionTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData(3UL)] // the capacity-lease check counted an edge's open connections as granted slots
    [InlineData(6UL)] // edge crash: the fake server kept counting a statement whose connection the edge closed
    [InlineData(22UL)]
    [InlineData(46UL)]
    [InlineData(54UL)]
    [InlineData(78UL)]
    [InlineData(110UL)]
    [InlineData(53UL)] // CoDel refusing on arrival was checked as if the request had taken a free slot
    [InlineData(164UL)] // long partitions: local shares of cut-off edges (the design's fail-open) exceed budget + one lease
    [InlineData(268UL)]
    [InlineData(295UL)]
    public void Run_OnceFailingSeed_Passes(ulong seed) => CiSeeds.AssertPasses(seed, output);

    /// <summary>
    /// The strict partition bound (budget plus one lease period) does not hold for the design's
    /// fail-open degradation: edge0 is cut off for 24 s and spends budget ÷ 2 on its local share
    /// while the tier leases the whole budget to edge1. Kept as a test so that the finding stays
    /// visible — and so that it fails once the policy tier reserves the share of edges it cannot hear.
    /// </summary>
    [Fact]
    public void Run_Seed268WithStrictPartitionBound_BudgetExceededByLocalShares()
    {
        var result = SimWorld.Run(SimOptions.Generate(268) with { StrictPartitionBudget = true });
        output.WriteLine(result.Summary());
        Assert.Equal("budget", result.Violation?.Invariant);
        Assert.Contains("tenant noisy", result.Violation!.Message, StringComparison.Ordinal);
    }
}
