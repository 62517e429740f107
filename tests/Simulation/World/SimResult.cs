using System.Globalization;
using System.Text;
using MProxy.Simulation.Invariants;

namespace MProxy.Simulation.World;

/// <summary>What one run of one seed came to: its trace hash, the first violation (if any), and counters.</summary>
public sealed record SimResult(
    SimOptions Options,
    string Description,
    ulong TraceHash,
    Violation? Violation,
    IReadOnlyList<string> TraceTail,
    TimeSpan SimulatedTime,
    long Events,
    long TraceLines,
    TimeSpan WallTime,
    RequestLedger Requests,
    SimChecks Checks)
{
    public ulong Seed => Options.Seed;

    public bool Passed => Violation is null;

    /// <summary>The command that replays this seed with its full trace.</summary>
    public string ReplayCommand => $"scripts/simulate.sh --seed {Seed} --verbose";

    public string Summary()
    {
        var c = CultureInfo.InvariantCulture;
        var b = new StringBuilder();
        b.Append(c, $"seed {Seed} ({Options.Scenario}): {(Passed ? "passed" : "FAILED")}; trace {TraceHash:x16}; ");
        b.Append(c, $"{SimulatedTime.TotalSeconds:0.#}s simulated in {WallTime.TotalSeconds:0.##}s, {Events} events, {TraceLines} trace lines; ");
        b.Append(c, $"{Requests.Issued} requests: {string.Join(", ", Requests.Outcomes.Select(o => $"{o.Key} {o.Value}"))}");
        b.AppendLine();
        b.Append(c, $"  checked: {Checks.Connections.TransactionsChecked} transactions, {Checks.Priority.GrantsChecked} grants and {Checks.Priority.ShedsChecked} sheds, {Checks.Pools.Checked} pool states, {Checks.Budgets.WindowsChecked} budget windows (peak {string.Join(", ", Checks.Budgets.PeakRatio.Select(p => $"{p.Key} {p.Value:0.00}"))}), {Checks.Leases.GrainChecks} grain and {Checks.Leases.EdgeChecks} edge lease checks; local-share RU while cut off: {(Checks.Budgets.FailOpenRu.Count == 0 ? "none" : string.Join(", ", Checks.Budgets.FailOpenRu.Select(p => $"{p.Key} {p.Value:0}")))}");
        if (Violation is not null)
        {
            b.AppendLine();
            b.Append(c, $"  VIOLATION {Violation}");
            b.AppendLine();
            b.Append(c, $"  replay: {ReplayCommand}");
        }
        return b.ToString();
    }

    /// <summary>Everything a failing test prints: the options, the summary and the last lines of the trace.</summary>
    public string Report()
    {
        var b = new StringBuilder();
        b.AppendLine(Description);
        b.AppendLine(Summary());
        if (!Passed && TraceTail.Count > 0)
        {
            b.AppendLine("  last trace lines:");
            foreach (var line in TraceTail.Skip(Math.Max(0, TraceTail.Count - 120)))
                b.Append("    ").AppendLine(line);
        }
        return b.ToString();
    }
}
