using MProxy.Edge.Backends;
using MProxy.Simulation.Backends;
using MProxy.Simulation.Core;
using MProxy.Simulation.Edges;
using MProxy.Simulation.Workloads;

namespace MProxy.Simulation.Invariants;

/// <summary>
/// Invariants on server connections and transactions, checked at every attach, statement and detach:
/// <list type="bullet">
/// <item>no server connection is shared by two clients inside a transaction (nor handed out while
/// attached, running, or with a transaction open);</item>
/// <item>a transaction never spans two backends (every statement of it runs on the connection, so
/// the host, it began on);</item>
/// <item>a write is never routed to a host the edge's own snapshot calls a replica;</item>
/// <item>read-your-writes: a read on a replica sees the client's last acknowledged write (when the
/// edge is configured for it and no failover intervened).</item>
/// </list>
/// </summary>
public sealed class ConnectionChecks(SimContext sim)
{
    private readonly Dictionary<long, FakeServerConnection> _transactions = [];

    public long TransactionsChecked { get; private set; }

    public void OnAttach(SimSession session, FakeServerConnection connection)
    {
        if (connection.Owner != 0)
            sim.Checks.Fail("exclusive-connection", $"{connection} handed to {session} while session {connection.Owner} is attached to it");
        else if (connection.InTransaction)
            sim.Checks.Fail("exclusive-connection", $"{connection} handed to {session} with a transaction still open on it (owner {connection.TransactionOwner})");
        else if (connection.IsRunning)
            sim.Checks.Fail("exclusive-connection", $"{connection} handed to {session} while a statement runs on it");
    }

    public void OnExecute(SimSession session, FakeServerConnection connection, StatementSpec spec)
    {
        if (connection.Owner != session.Id)
            sim.Checks.Fail("exclusive-connection", $"{session} sends '{spec}' on {connection}, which is attached to session {connection.Owner}");
        if (connection.InTransaction && connection.TransactionOwner != session.Id)
            sim.Checks.Fail("exclusive-connection", $"{session} sends '{spec}' inside the transaction of session {connection.TransactionOwner} on {connection}");
        if (_transactions.TryGetValue(session.Id, out var began) && !ReferenceEquals(began, connection))
            sim.Checks.Fail("transaction-one-backend", $"the transaction of {session} began on {began} but '{spec}' runs on {connection}");
        var edge = session.Edge;
        if (!spec.Writes && connection.Host.InRecovery && edge.Backends.Config.ReadYourWrites
            && session.Token.Lsn.Value > connection.Host.Lsn && session.TokenTimeline == connection.Host.Timeline)
        {
            sim.Checks.Fail("read-your-writes", $"{session} reads '{spec}' on replica {connection.Host.Name} at {new Lsn(connection.Host.Lsn)}, before its own write at {session.Token.Lsn}");
        }
    }

    public void OnExecuted(SimSession session, FakeServerConnection connection, ExecResult result)
    {
        if (connection.InTransaction && !result.ConnectionLost)
        {
            if (connection.TransactionOwner == 0)
            {
                connection.TransactionOwner = session.Id;
                _transactions[session.Id] = connection;
                TransactionsChecked++;
            }
            return;
        }
        if (connection.TransactionOwner == session.Id)
            connection.TransactionOwner = 0;
        _transactions.Remove(session.Id);
    }

    /// <summary>The session let go of the connection (the edge cleans up what it left open).</summary>
    public void OnDetach(SimSession session, FakeServerConnection connection)
    {
        if (connection.TransactionOwner == session.Id)
            connection.TransactionOwner = 0;
        _transactions.Remove(session.Id);
    }

    public void OnRoute(SimSession session, StatementSpec spec, RouteDecision decision)
    {
        if (spec.Writes && decision.Target == RouteTarget.Replica)
            sim.Checks.Fail("routing", $"{session}: the write '{spec}' was routed to replica {decision.Backend?.Endpoint} ({decision.Reason})");
    }
}
