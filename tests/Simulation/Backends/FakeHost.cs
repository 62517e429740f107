using MProxy.Edge.Configuration;
using MProxy.Simulation.Core;
using MProxy.Simulation.Workloads;

namespace MProxy.Simulation.Backends;

/// <summary>How a statement ended on a fake server.</summary>
/// <param name="SqlState">Null on success; else the error's SQLSTATE.</param>
/// <param name="Message">The error's message.</param>
/// <param name="BytesRead">Bytes the server sent back (rows), counted on the wire.</param>
/// <param name="BytesWritten">Bytes the client sent.</param>
/// <param name="ConnectionLost">The server connection died (crash): the client gets 08006 and the connection is broken.</param>
/// <param name="CommitLsn">For a committed write: the WAL position after it (the read-your-writes token).</param>
public readonly record struct ExecResult(string? SqlState, string? Message, long BytesRead, long BytesWritten, bool ConnectionLost, ulong CommitLsn)
{
    public bool Succeeded => SqlState is null;
}

/// <summary>
/// A fake PostgreSQL host: primary or replica, with a WAL position, replication from its upstream
/// with a configurable lag, a latency model (log-normal, scaled by a slowdown factor and by load),
/// a connection limit, and faults — crash (connections reset), freeze (nothing answers until it
/// thaws), promotion, rebuild as a replica, paused replay.
/// </summary>
public sealed class FakeHost
{
    private readonly SimContext _sim;
    private readonly SimRandom _random;
    private readonly HashSet<FakeServerConnection> _connections = [];
    private readonly List<(ulong Lsn, long At)> _replayBacklog = [];
    private readonly List<Action> _frozen = [];
    private long _lastApplyAt;
    private int _running;

    public FakeHost(SimContext sim, int index, bool primary, FakeHostOptions options)
    {
        _sim = sim;
        Index = index;
        Options = options;
        _random = sim.Random.Fork("host" + index);
        Endpoint = new HostPort($"db{index}.sim", 5432);
        InRecovery = !primary;
        Timeline = 1;
        Lsn = 0x1_0000_0000UL;
    }

    public int Index { get; }

    public HostPort Endpoint { get; }

    public string Name => "db" + Index;

    public FakeHostOptions Options { get; }

    public bool Up { get; private set; } = true;

    /// <summary>Frozen: the process is alive but answers nothing (SIGSTOP, a stuck disk).</summary>
    public bool Frozen { get; private set; }

    /// <summary>Bumped by every crash: connections of an older incarnation are dead.</summary>
    public int Incarnation { get; private set; }

    public bool InRecovery { get; private set; }

    public uint Timeline { get; private set; }

    /// <summary>Primary: current WAL insert position. Replica: replay position.</summary>
    public ulong Lsn { get; private set; }

    /// <summary>The primary this replica streams from (null for a primary).</summary>
    public FakeHost? Upstream { get; set; }

    public double Slowdown { get; set; } = 1;

    public bool ReplayPaused { get; private set; }

    public int ConnectionCount => _connections.Count;

    public int Running => _running;

    /// <summary>A connection attempt (after the network's connect time): succeeds or throws.</summary>
    public FakeServerConnection Accept(string pool, int edge)
    {
        if (!Up)
            throw new SimServerException("08006", $"connection to server {Endpoint} refused");
        if (_connections.Count >= Options.MaxConnections)
            throw new SimServerException("53300", "sorry, too many clients already");
        var connection = new FakeServerConnection(_sim, this, pool, edge, _sim.NextId(), Incarnation);
        _connections.Add(connection);
        return connection;
    }

    public void Disconnect(FakeServerConnection connection) => _connections.Remove(connection);

    /// <summary>How long a connection attempt or a probe takes to get an answer.</summary>
    public TimeSpan RoundTrip() => TimeSpan.FromMilliseconds(_random.LogNormal(Options.RoundTripMs, 0.3) * Slowdown);

    /// <summary>Runs (or defers while frozen) <paramref name="action"/> once the host answers.</summary>
    public void WhenResponsive(Action action)
    {
        if (Frozen)
            _frozen.Add(action);
        else
            action();
    }

    /// <summary>Runs a statement on <paramref name="connection"/>; completes on the driver's thread.</summary>
    public Task<ExecResult> ExecuteAsync(FakeServerConnection connection, StatementSpec statement)
    {
        var done = new TaskCompletionSource<ExecResult>();
        var written = 64 + (statement.Text.Length * 2L);
        if (connection.IsBroken)
        {
            _sim.Clock.After(TimeSpan.FromMilliseconds(0.1), () => done.TrySetResult(Lost(written)));
            return done.Task;
        }
        if (connection.Failed && statement.Tx is not (TxEffect.Rollback or TxEffect.Commit))
        {
            _sim.Clock.After(TimeSpan.FromMilliseconds(0.1), () => done.TrySetResult(
                new ExecResult("25P02", "current transaction is aborted, commands ignored until end of transaction block", 0, written, false, 0)));
            return done.Task;
        }
        var load = Math.Max(1.0, (_running + 1) / (double)Options.Cores);
        var ms = _random.LogNormal(statement.MedianMs, Options.LatencySigma) * Slowdown * load;
        var limit = connection.StatementTimeout;
        var timedOut = limit > TimeSpan.Zero && ms > limit.TotalMilliseconds;
        if (timedOut)
            ms = limit.TotalMilliseconds;
        var incarnation = Incarnation;
        _running++;
        connection.Begin(done);
        _sim.Clock.After(TimeSpan.FromMilliseconds(ms), () => WhenResponsive(() =>
        {
            if (!connection.TryEnd(done))
                return; // cancelled or lost meanwhile
            _running--;
            if (timedOut && Up && incarnation == Incarnation && !connection.IsBroken)
            {
                connection.FailTransaction();
                done.TrySetResult(new ExecResult("57014", "canceling statement due to statement timeout", 0, written, false, 0));
                return;
            }
            done.TrySetResult(Complete(connection, statement, incarnation, written));
        }));
        return done.Task;
    }

    private ExecResult Complete(FakeServerConnection connection, StatementSpec statement, int incarnation, long written)
    {
        if (!Up || incarnation != Incarnation || connection.IsBroken)
            return Lost(written);
        if (statement.Writes && InRecovery)
        {
            connection.FailTransaction();
            return new ExecResult("25006", "cannot execute UPDATE in a read-only transaction", 0, written, false, 0);
        }
        ulong commitLsn = 0;
        switch (statement.Tx)
        {
            case TxEffect.Begin:
                connection.BeginTransaction();
                break;
            case TxEffect.Commit:
            case TxEffect.Rollback:
                var wrote = connection.EndTransaction(commit: statement.Tx == TxEffect.Commit && !connection.Failed);
                if (wrote)
                    commitLsn = Commit();
                break;
        }
        if (statement.Writes)
        {
            if (connection.InTransaction)
                connection.MarkWrite();
            else
                commitLsn = Commit();
        }
        return new ExecResult(null, null, 80 + (statement.Rows * 100L), written, false, commitLsn);
    }

    private static ExecResult Lost(long written) =>
        new("08006", "server closed the connection unexpectedly", 0, written, true, 0);

    /// <summary>A write committed on this primary: the WAL moves on and every replica streaming from it replays it after its lag.</summary>
    private ulong Commit()
    {
        Lsn += (ulong)_random.Next(100, 8000);
        var lsn = Lsn;
        foreach (var replica in Replicas())
            replica.Receive(lsn);
        return lsn;
    }

    private IEnumerable<FakeHost> Replicas() => Cluster?.Hosts.Where(h => h.Upstream == this && h.Up) ?? [];

    internal FakeCluster? Cluster { get; set; }

    private void Receive(ulong lsn)
    {
        var lag = TimeSpan.FromMilliseconds(_random.LogNormal(Options.ReplicationLagMs, 0.6));
        var at = Math.Max(_lastApplyAt, _sim.Clock.NowTicks + lag.Ticks);
        _lastApplyAt = at;
        if (ReplayPaused)
        {
            _replayBacklog.Add((lsn, at));
            return;
        }
        var upstream = Upstream;
        var incarnation = Incarnation;
        _sim.Clock.At(at, () =>
        {
            if (Up && Incarnation == incarnation && Upstream == upstream && InRecovery && lsn > Lsn)
                Lsn = lsn;
        });
    }

    /// <summary>Cancels what <paramref name="connection"/> runs (a CancelRequest): it ends with 57014.</summary>
    public void Cancel(FakeServerConnection connection, string message)
    {
        if (!Up || Frozen)
            return;
        if (connection.CancelRunning(new ExecResult("57014", message, 0, 0, false, 0)))
            _running--;
    }

    /// <summary>The client of a running statement closed its connection: the statement stops.</summary>
    internal void Abandon(FakeServerConnection connection)
    {
        if (Up && connection.Incarnation == Incarnation)
            _running--;
    }

    // ---------------------------------------------------------------- faults

    public void Crash()
    {
        if (!Up)
            return;
        Up = false;
        Frozen = false;
        _frozen.Clear();
        Incarnation++;
        _running = 0;
        foreach (var connection in _connections.ToList())
            connection.Kill();
        _connections.Clear();
        _replayBacklog.Clear();
        _sim.Trace.Write(Name, "CRASH");
    }

    /// <summary>Comes back after a crash: as it was (primary or replica), or rebuilt as a replica of <paramref name="newPrimary"/>.</summary>
    public void Restart(FakeHost? newPrimary)
    {
        if (Up)
            return;
        Up = true;
        if (newPrimary is not null && newPrimary != this)
        {
            // pg_rewind / a fresh base backup: a replica of the new primary at its current position.
            InRecovery = true;
            Upstream = newPrimary;
            Timeline = newPrimary.Timeline;
            Lsn = newPrimary.Lsn;
        }
        _lastApplyAt = _sim.Clock.NowTicks;
        _sim.Trace.Write(Name, $"RESTART as {(InRecovery ? "replica of " + Upstream?.Name : "primary")} lsn={Lsn:X}");
    }

    public void Freeze()
    {
        if (!Up || Frozen)
            return;
        Frozen = true;
        _sim.Trace.Write(Name, "FREEZE");
    }

    public void Thaw()
    {
        if (!Frozen)
            return;
        Frozen = false;
        _sim.Trace.Write(Name, $"THAW ({_frozen.Count} deferred)");
        var deferred = _frozen.ToList();
        _frozen.Clear();
        foreach (var action in deferred)
            action();
    }

    /// <summary>pg_promote(): leaves recovery on a new timeline.</summary>
    public void Promote(uint timeline)
    {
        InRecovery = false;
        Upstream = null;
        Timeline = timeline;
        _sim.Trace.Write(Name, $"PROMOTED timeline={timeline} lsn={Lsn:X}");
    }

    public void PauseReplay()
    {
        ReplayPaused = true;
        _sim.Trace.Write(Name, "replay paused");
    }

    public void ResumeReplay()
    {
        if (!ReplayPaused)
            return;
        ReplayPaused = false;
        _sim.Trace.Write(Name, $"replay resumed ({_replayBacklog.Count} pending)");
        var upstream = Upstream;
        var incarnation = Incarnation;
        foreach (var (lsn, at) in _replayBacklog)
        {
            var due = Math.Max(at, _sim.Clock.NowTicks);
            _sim.Clock.At(due, () =>
            {
                if (Up && Incarnation == incarnation && Upstream == upstream && InRecovery && lsn > Lsn)
                    Lsn = lsn;
            });
        }
        _replayBacklog.Clear();
    }
}

/// <summary>A fake host's fixed characteristics.</summary>
public sealed record FakeHostOptions
{
    public double RoundTripMs { get; init; } = 0.5;

    public double LatencySigma { get; init; } = 0.5;

    /// <summary>Statements run at full speed up to this many at once; beyond, each slows in proportion.</summary>
    public int Cores { get; init; } = 8;

    public int MaxConnections { get; init; } = 100;

    public double ReplicationLagMs { get; init; } = 20;
}

/// <summary>An error a fake server (or connecting to it) raised.</summary>
public sealed class SimServerException(string sqlState, string message) : Exception(message)
{
    public string SqlState { get; } = sqlState;
}
