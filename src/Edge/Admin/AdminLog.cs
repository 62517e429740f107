using Microsoft.Extensions.Logging;

namespace MProxy.Edge.Admin;

/// <summary>Structured log events of the admin console (event ids 4020–4039).</summary>
internal static partial class AdminLog
{
    [LoggerMessage(4020, LogLevel.Information, "Admin console: client {ClientId} ({User}) ran {Command}")]
    public static partial void Command(ILogger logger, int clientId, string user, string command);

    [LoggerMessage(4021, LogLevel.Warning, "Admin console: refused user {User} from {Remote}: not an admin")]
    public static partial void Refused(ILogger logger, string user, string? remote);

    [LoggerMessage(4022, LogLevel.Information, "Admin console: client {ClientId} ({User}) connected from {Remote}")]
    public static partial void Connected(ILogger logger, int clientId, string user, string? remote);

    [LoggerMessage(4023, LogLevel.Error, "Admin console: {Command} failed")]
    public static partial void CommandFailed(ILogger logger, string command, Exception exception);
}
