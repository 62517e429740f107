using MProxy.Simulation.Core;
using MProxy.Simulation.Edges;

namespace MProxy.Simulation.Invariants;

/// <summary>
/// Invariant: every client request ends in a reply or an error — the client gets an answer, and the
/// edge finishes processing the unit (even one whose client went away) — within
/// <c>RequestDeadline</c> at any time, and all of them by the end of the drain.
/// </summary>
public sealed class RequestLedger(SimContext sim)
{
    private readonly Dictionary<long, Entry> _unanswered = [];
    private readonly Dictionary<long, Entry> _unfinished = [];
    private readonly SortedDictionary<string, long> _outcomes = new(StringComparer.Ordinal);

    public long Issued { get; private set; }

    public long Answered { get; private set; }

    public long Succeeded { get; private set; }

    public int Open => _unanswered.Count + _unfinished.Count;

    /// <summary>Replies by outcome ("ok", or the SQLSTATE), for the summary.</summary>
    public IReadOnlyDictionary<string, long> Outcomes => _outcomes;

    public long Issue(string client, SimSession session, string text)
    {
        var id = sim.NextId();
        var entry = new Entry(id, client, session.ToString(), text, sim.Clock.NowTicks);
        _unanswered[id] = entry;
        _unfinished[id] = entry;
        Issued++;
        return id;
    }

    /// <summary>The client got its answer (or gave up waiting: <paramref name="reply"/> is then null).</summary>
    public void Answer(long id, Reply? reply)
    {
        if (!_unanswered.Remove(id, out var entry))
        {
            sim.Checks.Fail("request-answered", $"request {id} answered twice");
            return;
        }
        Answered++;
        var key = reply is null ? "abandoned" : reply.Value.Succeeded ? "ok" : reply.Value.SqlState!;
        _outcomes[key] = _outcomes.GetValueOrDefault(key) + 1;
        if (reply is { Succeeded: true })
            Succeeded++;
        _ = entry;
    }

    /// <summary>The edge finished processing the request's unit.</summary>
    public void Finish(long id)
    {
        if (!_unfinished.Remove(id))
            sim.Checks.Fail("request-answered", $"request {id} finished twice");
    }

    /// <summary>Fails on the oldest request or unit older than <paramref name="deadline"/>.</summary>
    public void CheckDeadline(TimeSpan deadline)
    {
        var now = sim.Clock.NowTicks;
        foreach (var entry in _unanswered.Values)
            if (now - entry.IssuedAt > deadline.Ticks)
            {
                sim.Checks.Fail("request-answered", $"{entry} has had no reply for more than {deadline.TotalSeconds:0}s");
                return;
            }
        foreach (var entry in _unfinished.Values)
            if (now - entry.IssuedAt > deadline.Ticks)
            {
                sim.Checks.Fail("request-answered", $"{entry}: the edge has not finished it after {deadline.TotalSeconds:0}s");
                return;
            }
    }

    /// <summary>At the end of the drain: nothing may be left.</summary>
    public void CheckAllDone()
    {
        foreach (var entry in _unanswered.Values)
        {
            sim.Checks.Fail("request-answered", $"{entry} never got a reply");
            return;
        }
        foreach (var entry in _unfinished.Values)
        {
            sim.Checks.Fail("request-answered", $"{entry} was never finished by the edge");
            return;
        }
    }

    private sealed record Entry(long Id, string Client, string Session, string Text, long IssuedAt)
    {
        public override string ToString() => $"request {Id} of {Client} on {Session} ('{Text}', issued at {SimTrace.Stamp(IssuedAt).Trim()})";
    }
}
