using System.Globalization;
using System.Text;

namespace MProxy.Simulation.Core;

/// <summary>
/// The run's trace: one line per observable step (time, actor, what happened), folded into a
/// 64-bit hash (FNV-1a over the UTF-16 text) that two runs of the same seed must agree on. Verbose
/// runs print every line; others keep the last lines for a failure report.
/// </summary>
public sealed class SimTrace
{
    private const int Keep = 400;

    private readonly SimClock _clock;
    private readonly TextWriter? _verbose;
    private readonly Queue<string> _tail = new();
    private readonly StringBuilder _line = new();
    private ulong _hash = 14695981039346656037UL;

    public SimTrace(SimClock clock, TextWriter? verbose)
    {
        _clock = clock;
        _verbose = verbose;
    }

    public ulong Hash => _hash;

    public long Lines { get; private set; }

    public bool IsVerbose => _verbose is not null;

    /// <summary>The last lines written (for a failure report).</summary>
    public IReadOnlyCollection<string> Tail => _tail;

    public void Write(string actor, string text)
    {
        _line.Clear();
        _line.Append(Stamp(_clock.NowTicks)).Append(' ').Append(actor).Append(": ").Append(text);
        var line = _line.ToString();
        foreach (var c in line)
            _hash = (_hash ^ c) * 1099511628211UL;
        _hash = (_hash ^ '\n') * 1099511628211UL;
        Lines++;
        if (_verbose is not null)
        {
            _verbose.WriteLine(line);
            return;
        }
        if (_tail.Count == Keep)
            _tail.Dequeue();
        _tail.Enqueue(line);
    }

    /// <summary>Writes a line that does not enter the hash (headers, summaries).</summary>
    public void Note(string text) => _verbose?.WriteLine(text);

    public static string Stamp(long ticks) =>
        string.Create(CultureInfo.InvariantCulture, $"{ticks / TimeSpan.TicksPerSecond,4}.{ticks % TimeSpan.TicksPerSecond / 10,6:D6}");

    /// <summary>Formats a double so that the same value always prints the same (round-trip precision).</summary>
    public static string F(double value) => value.ToString("R", CultureInfo.InvariantCulture);

    public static string Ms(TimeSpan span) => span.TotalMilliseconds.ToString("0.###", CultureInfo.InvariantCulture) + "ms";
}
