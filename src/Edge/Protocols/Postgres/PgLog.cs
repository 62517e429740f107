using Microsoft.Extensions.Logging;

namespace MProxy.Edge.Protocols.Postgres;

/// <summary>Structured log events of the PostgreSQL adapter (event ids 1000–1999). Never secrets or parameter values.</summary>
internal static partial class PgLog
{
    [LoggerMessage(1000, LogLevel.Information, "Client {ClientId} from {Remote} logged in as {User} to {Database}")]
    public static partial void ClientLoggedIn(ILogger logger, int clientId, string? remote, string user, string database);

    [LoggerMessage(1001, LogLevel.Warning, "Client {ClientId} from {Remote} failed to log in as {User} to {Database}: {Reason}")]
    public static partial void ClientLoginFailed(ILogger logger, int clientId, string? remote, string user, string database, string reason);

    [LoggerMessage(1002, LogLevel.Warning, "Client {ClientId} broke the protocol and was closed: {Reason}")]
    public static partial void ClientProtocolViolation(ILogger logger, int clientId, string reason);

    [LoggerMessage(1003, LogLevel.Debug, "Client {ClientId} disconnected")]
    public static partial void ClientDisconnected(ILogger logger, int clientId);

    [LoggerMessage(1004, LogLevel.Warning, "Refused a client from {Remote}: {Reason}")]
    public static partial void ClientRefused(ILogger logger, string? remote, string reason);

    [LoggerMessage(1005, LogLevel.Information, "TLS handshake with a client from {Remote} failed: {Reason}")]
    public static partial void ClientTlsFailed(ILogger logger, string? remote, string reason);

    [LoggerMessage(1010, LogLevel.Information, "Opened server connection {ServerId} to {Endpoint} for pool {Pool}")]
    public static partial void ServerOpened(ILogger logger, long serverId, string endpoint, string pool);

    [LoggerMessage(1011, LogLevel.Warning, "Could not open a server connection to {Endpoint} for pool {Pool}: {Reason}")]
    public static partial void ServerOpenFailed(ILogger logger, string endpoint, string pool, string reason);

    [LoggerMessage(1012, LogLevel.Information, "Closed server connection {ServerId}: {Reason}")]
    public static partial void ServerClosed(ILogger logger, long serverId, string reason);

    [LoggerMessage(1013, LogLevel.Warning, "Server connection {ServerId} to {Endpoint} failed: {Reason}")]
    public static partial void ServerConnectionFailed(ILogger logger, long serverId, string endpoint, string reason);

    [LoggerMessage(1014, LogLevel.Warning, "Server connection {ServerId} reported {SqlState}: {Message}")]
    public static partial void ServerAsyncError(ILogger logger, long serverId, string sqlState, string message);

    [LoggerMessage(1015, LogLevel.Warning, "A request the edge sent on server connection {ServerId} failed with {SqlState}: {Message}")]
    public static partial void InternalRequestFailed(ILogger logger, long serverId, string sqlState, string message);

    [LoggerMessage(1030, LogLevel.Warning, "Client {ClientId}: runaway rule {Rule} fired (cancel: {Cancel})")]
    public static partial void RunawayHit(ILogger logger, int clientId, string rule, bool cancel);

    [LoggerMessage(1016, LogLevel.Warning, "Closed pool {Pool} of {Host}: {Reason}")]
    public static partial void PoolClosed(ILogger logger, string pool, string host, string reason);

    [LoggerMessage(1020, LogLevel.Information, "Client {ClientId} cancelled its request on server connection {ServerId}")]
    public static partial void CancelForwarded(ILogger logger, int clientId, long serverId);

    [LoggerMessage(1021, LogLevel.Debug, "Ignored a cancel request for an unknown or idle client {ClientId}")]
    public static partial void CancelIgnored(ILogger logger, int clientId);
}
