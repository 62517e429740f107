using Microsoft.Extensions.Logging;

namespace MProxy.Edge.Protocols.MySql;

/// <summary>Structured log events of the MySQL adapter (event ids 3000–3099). Never secrets or parameter values.</summary>
internal static partial class MySqlLog
{
    [LoggerMessage(3000, LogLevel.Information, "MySQL client {ClientId} from {Remote} logged in as {User} to {Database}")]
    public static partial void ClientLoggedIn(ILogger logger, uint clientId, string? remote, string user, string database);

    [LoggerMessage(3001, LogLevel.Warning, "MySQL client {ClientId} from {Remote} failed to log in as {User}: {Reason}")]
    public static partial void ClientLoginFailed(ILogger logger, uint clientId, string? remote, string user, string reason);

    [LoggerMessage(3002, LogLevel.Warning, "MySQL client {ClientId} broke the protocol and was closed: {Reason}")]
    public static partial void ClientProtocolViolation(ILogger logger, uint clientId, string reason);

    [LoggerMessage(3003, LogLevel.Debug, "MySQL client {ClientId} disconnected")]
    public static partial void ClientDisconnected(ILogger logger, uint clientId);

    [LoggerMessage(3004, LogLevel.Warning, "Refused a MySQL client from {Remote}: {Reason}")]
    public static partial void ClientRefused(ILogger logger, string? remote, string reason);

    [LoggerMessage(3005, LogLevel.Information, "MySQL client {ClientId} changed user to {User} on {Database}")]
    public static partial void ClientChangedUser(ILogger logger, uint clientId, string user, string database);

    [LoggerMessage(3006, LogLevel.Debug, "MySQL client {ClientId} pinned its server connection: {Reason}")]
    public static partial void ClientPinned(ILogger logger, uint clientId, string reason);

    [LoggerMessage(3010, LogLevel.Information, "Opened MySQL server connection {ServerId} to {Endpoint} for pool {Pool}")]
    public static partial void ServerOpened(ILogger logger, long serverId, string endpoint, string pool);

    [LoggerMessage(3011, LogLevel.Warning, "Could not open a MySQL server connection to {Endpoint} for pool {Pool}: {Reason}")]
    public static partial void ServerOpenFailed(ILogger logger, string endpoint, string pool, string reason);

    [LoggerMessage(3012, LogLevel.Information, "Closed MySQL server connection {ServerId}: {Reason}")]
    public static partial void ServerClosed(ILogger logger, long serverId, string reason);

    [LoggerMessage(3013, LogLevel.Warning, "MySQL server connection {ServerId} to {Endpoint} failed: {Reason}")]
    public static partial void ServerConnectionFailed(ILogger logger, long serverId, string endpoint, string reason);

    [LoggerMessage(3014, LogLevel.Warning, "MySQL server connection {ServerId} reported error {Code}: {Message}")]
    public static partial void ServerAsyncError(ILogger logger, long serverId, ushort code, string message);

    [LoggerMessage(3015, LogLevel.Warning, "A command the edge sent on MySQL server connection {ServerId} failed with {Code}: {Message}")]
    public static partial void InternalRequestFailed(ILogger logger, long serverId, ushort code, string message);

    [LoggerMessage(3009, LogLevel.Information, "TLS handshake with a MySQL client from {Remote} failed: {Reason}")]
    public static partial void ClientTlsFailed(ILogger logger, string? remote, string reason);

    [LoggerMessage(3020, LogLevel.Warning, "MySQL client {ClientId}: runaway rule {Rule} fired (cancel: {Cancel})")]
    public static partial void RunawayHit(ILogger logger, uint clientId, string rule, bool cancel);

    [LoggerMessage(3021, LogLevel.Information, "MySQL client {ClientId}: refused LOAD DATA LOCAL (not enabled for database {Database})")]
    public static partial void LoadLocalRefused(ILogger logger, uint clientId, string database);

    [LoggerMessage(3030, LogLevel.Warning, "Closed MySQL pool {Pool} of {Host}: {Reason}")]
    public static partial void PoolClosed(ILogger logger, string pool, string host, string reason);
}
