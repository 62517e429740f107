using System.Diagnostics;
using System.Globalization;
using MProxy.Simulation.World;

namespace MProxy.Simulation.Tests;

/// <summary>
/// Runs seeds chosen from the environment (what <c>scripts/simulate.sh</c> sets): one seed with its
/// full trace (<c>MPROXY_SIM_SEED</c>, <c>MPROXY_SIM_VERBOSE=1</c>), or any number of seeds
/// (<c>MPROXY_SIM_SEEDS</c> from <c>MPROXY_SIM_START</c>). Skipped when neither is set.
/// </summary>
public sealed class SimulationExplorer
{
    [Fact]
    public void Explore_SeedsFromEnvironment_AllPass()
    {
        var one = Environment.GetEnvironmentVariable("MPROXY_SIM_SEED");
        var many = Environment.GetEnvironmentVariable("MPROXY_SIM_SEEDS");
        if (string.IsNullOrEmpty(one) && string.IsNullOrEmpty(many))
            Assert.Skip("set MPROXY_SIM_SEED or MPROXY_SIM_SEEDS (scripts/simulate.sh) to explore seeds");
        var verbose = Environment.GetEnvironmentVariable("MPROXY_SIM_VERBOSE") == "1";
        var output = Console.Out;
        if (!string.IsNullOrEmpty(one))
        {
            var seed = ulong.Parse(one, CultureInfo.InvariantCulture);
            var result = SimWorld.Run(seed, verbose ? output : null);
            if (!verbose)
                output.WriteLine(result.Report());
            var again = SimWorld.Run(seed);
            output.WriteLine(again.TraceHash == result.TraceHash
                ? $"seed {seed}: same trace hash {result.TraceHash:x16} on a second run"
                : $"seed {seed}: NOT DETERMINISTIC: trace hash {result.TraceHash:x16}, then {again.TraceHash:x16}");
            Assert.True(result.Passed, result.Summary());
            Assert.Equal(result.TraceHash, again.TraceHash);
            return;
        }
        var count = int.Parse(many!, CultureInfo.InvariantCulture);
        var start = ulong.Parse(Environment.GetEnvironmentVariable("MPROXY_SIM_START") is { Length: > 0 } s ? s : "1", CultureInfo.InvariantCulture);
        var failed = new List<SimResult>();
        var clock = Stopwatch.StartNew();
        for (var i = 0UL; i < (ulong)count; i++)
        {
            var result = SimWorld.Run(start + i);
            output.WriteLine(result.Summary());
            if (!result.Passed)
                failed.Add(result);
        }
        var minutes = clock.Elapsed.TotalMinutes;
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{count} seeds from {start} in {clock.Elapsed.TotalSeconds:0.#}s ({count / Math.Max(minutes, 1e-9):0.#} seeds/minute); {failed.Count} failed"));
        foreach (var f in failed)
            output.WriteLine($"FAILED seed {f.Seed}: {f.Violation}\n  replay: {f.ReplayCommand}");
        Assert.True(failed.Count == 0, $"{failed.Count} of {count} seeds failed: {string.Join(", ", failed.Select(f => f.Seed))}");
    }
}
