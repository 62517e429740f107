namespace MProxy.Edge.Admin;

/// <summary>
/// One client connection, as SHOW CLIENTS shows it. <c>State</c> is login, idle (between
/// transactions), idle-in-transaction (PostgreSQL: after a BEGIN the edge deferred, holding no
/// server connection yet), active (holds a server connection), admin (on the console) or closing.
/// <c>Tls</c> is the negotiated protocol and cipher suite, or null for a cleartext connection.
/// </summary>
internal sealed record ClientView(
    int Id, string Protocol, string User, string Database, string? Tenant, string? ApplicationName, string State,
    string? Remote, DateTimeOffset ConnectedAt, long? ServerId, string? Tls = null);

/// <summary>A client session that can describe itself to the admin console (every protocol's session implements it).</summary>
internal interface IDescribedClient
{
    ClientView Describe();
}
