using Microsoft.AspNetCore.Connections;

namespace MProxy.Edge.Protocols.Postgres;

/// <summary>Kestrel's entry point for a connection on the PostgreSQL listener.</summary>
internal sealed class PgConnectionHandler(PgEdgeContext edge) : ConnectionHandler
{
    public override Task OnConnectedAsync(ConnectionContext connection) =>
        RelayClientSession.RunWithoutExecutionContext(new PgClientSession(edge, connection).RunAsync);
}
