using MProxy.Edge.Pooling;
using MProxy.Simulation.Core;

namespace MProxy.Simulation.Backends;

/// <summary>
/// One server connection to a <see cref="FakeHost"/>, as a pool holds it: the server's side of the
/// session (transaction state, the statement running) plus who the edge attached it to, which the
/// invariant checks read.
/// </summary>
public sealed class FakeServerConnection : IPooledConnection
{
    private readonly SimContext _sim;
    private TaskCompletionSource<ExecResult>? _running;
    private bool _killed;

    internal FakeServerConnection(SimContext sim, FakeHost host, string pool, int edge, long id, int incarnation)
    {
        _sim = sim;
        Host = host;
        Pool = pool;
        Edge = edge;
        Id = id;
        Incarnation = incarnation;
        OpenedAt = sim.Clock.GetTimestamp();
        IdleSince = OpenedAt;
    }

    public long Id { get; }

    public FakeHost Host { get; }

    public string Pool { get; }

    public int Edge { get; }

    public int Incarnation { get; }

    public bool Closed { get; private set; }

    /// <summary>Dead: closed, reset by a crash, or from an earlier incarnation of its host.</summary>
    public bool IsBroken => _killed || Closed || !Host.Up || Host.Incarnation != Incarnation;

    public long OpenedAt { get; }

    public long IdleSince { get; set; }

    public bool InTransaction { get; private set; }

    /// <summary>An error happened inside the open transaction: only ROLLBACK (or COMMIT, which rolls back) is accepted.</summary>
    public bool Failed { get; private set; }

    public bool IsRunning => _running is not null;

    /// <summary>statement_timeout as the edge last set it (between transactions); zero for none.</summary>
    public TimeSpan StatementTimeout { get; set; }

    /// <summary>The session attached to this connection (checker bookkeeping), 0 for none.</summary>
    public long Owner { get; set; }

    /// <summary>The session whose transaction is open on this connection, 0 for none.</summary>
    public long TransactionOwner { get; set; }

    private bool _wroteInTransaction;

    internal void Begin(TaskCompletionSource<ExecResult> done)
    {
        if (_running is not null)
            _sim.Checks.Fail("exclusive-connection", $"server connection {Id} on {Host.Name} got a statement while another was running on it");
        _running = done;
    }

    internal bool TryEnd(TaskCompletionSource<ExecResult> done)
    {
        if (!ReferenceEquals(_running, done))
            return false;
        _running = null;
        return true;
    }

    internal bool CancelRunning(ExecResult result)
    {
        if (_running is not { } running)
            return false;
        _running = null;
        FailTransaction();
        running.TrySetResult(result);
        return true;
    }

    internal void Kill()
    {
        _killed = true;
        InTransaction = false;
        if (_running is { } running)
        {
            _running = null;
            running.TrySetResult(new ExecResult("08006", "server closed the connection unexpectedly", 0, 0, true, 0));
        }
    }

    internal void BeginTransaction()
    {
        InTransaction = true;
        Failed = false;
        _wroteInTransaction = false;
    }

    /// <summary>Ends the transaction; true when a write was committed.</summary>
    internal bool EndTransaction(bool commit)
    {
        var wrote = commit && InTransaction && !Failed && _wroteInTransaction;
        InTransaction = false;
        Failed = false;
        _wroteInTransaction = false;
        return wrote;
    }

    internal void FailTransaction()
    {
        if (InTransaction)
            Failed = true;
    }

    internal void MarkWrite() => _wroteInTransaction = true;

    /// <summary>The pool closed it (or its host died).</summary>
    public void Close()
    {
        if (Closed)
            return;
        Closed = true;
        Host.Disconnect(this);
        if (_running is { } running)
        {
            // The server notices the closed socket and stops the statement (it no longer counts as running).
            _running = null;
            Host.Abandon(this);
            running.TrySetResult(new ExecResult("08006", "connection closed by the edge", 0, 0, true, 0));
        }
    }

    public override string ToString() => $"conn{Id}@{Host.Name}";
}
