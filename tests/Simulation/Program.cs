using System.Diagnostics;
using System.Globalization;
using MProxy.Simulation.World;

namespace MProxy.Simulation;

/// <summary>
/// The test executable's entry point: the xunit runners as usual, or — with <c>simulate</c> as the
/// first argument (what <c>scripts/simulate.sh</c> runs) — the seed explorer:
/// <c>simulate --seeds N [--from S]</c> runs N seeds from S; <c>simulate --seed S [--verbose]</c>
/// runs one seed (with its whole trace) twice and compares the trace hashes.
/// </summary>
internal static class Program
{
    public static int Main(string[] args)
    {
        if (args.Length > 0 && args[0] == "simulate")
            return Simulate(args[1..], Console.Out);
        if (args.Any(arg => arg is "--server" or "--internal-msbuild-node"))
            return Xunit.MicrosoftTestingPlatform.TestPlatformTestFramework.RunAsync(args, SelfRegisteredExtensions.AddSelfRegisteredExtensions).GetAwaiter().GetResult();
        return Xunit.Runner.InProc.SystemConsole.ConsoleRunner.Run(args).GetAwaiter().GetResult();
    }

    internal static int Simulate(string[] args, TextWriter output)
    {
        ulong? one = null;
        var count = 100;
        var from = 1UL;
        var verbose = false;
        for (var i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--seed":
                    one = ulong.Parse(args[++i], CultureInfo.InvariantCulture);
                    break;
                case "--seeds":
                    count = int.Parse(args[++i], CultureInfo.InvariantCulture);
                    break;
                case "--from":
                    from = ulong.Parse(args[++i], CultureInfo.InvariantCulture);
                    break;
                case "--verbose":
                    verbose = true;
                    break;
                default:
                    output.WriteLine($"unknown argument '{args[i]}'; usage: simulate (--seeds N [--from S] | --seed S [--verbose])");
                    return 2;
            }
        }
        return one is { } seed ? RunOne(seed, verbose, output) : RunMany(from, count, output);
    }

    private static int RunOne(ulong seed, bool verbose, TextWriter output)
    {
        var result = SimWorld.Run(seed, verbose ? output : null);
        output.WriteLine(verbose ? result.Summary() : result.Report());
        var again = SimWorld.Run(seed);
        var same = again.TraceHash == result.TraceHash;
        output.WriteLine(same
            ? $"seed {seed}: same trace hash {result.TraceHash:x16} on a second run"
            : $"seed {seed}: NOT DETERMINISTIC: trace hash {result.TraceHash:x16}, then {again.TraceHash:x16}");
        return result.Passed && same ? 0 : 1;
    }

    private static int RunMany(ulong from, int count, TextWriter output)
    {
        var failed = new List<SimResult>();
        var clock = Stopwatch.StartNew();
        for (var i = 0UL; i < (ulong)count; i++)
        {
            var result = SimWorld.Run(from + i);
            output.WriteLine(result.Summary());
            if (!result.Passed)
                failed.Add(result);
        }
        var minutes = clock.Elapsed.TotalMinutes;
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{count} seeds from {from} in {clock.Elapsed.TotalSeconds:0.#}s ({count / Math.Max(minutes, 1e-9):0.#} seeds/minute); {failed.Count} failed"));
        foreach (var f in failed)
            output.WriteLine($"FAILED seed {f.Seed}: {f.Violation}\n  replay: {f.ReplayCommand}");
        return failed.Count == 0 ? 0 : 1;
    }
}
