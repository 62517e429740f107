using Microsoft.Extensions.Logging;

namespace MProxy.Edge.Hosting;

/// <summary>Structured log events of configuration reload (event ids 4040–4059). Keys and messages only, never values of secrets.</summary>
internal static partial class ReloadLog
{
    [LoggerMessage(4040, LogLevel.Information, "Reloaded the configuration ({Trigger}): generation {Generation}, {Databases} database(s), {Users} user(s), {Groups} QoS group(s), {Tenants} tenant(s)")]
    public static partial void Reloaded(ILogger logger, string trigger, long generation, int databases, int users, int groups, int tenants);

    [LoggerMessage(4041, LogLevel.Error, "Configuration reload ({Trigger}) failed at {Key}: {Message}; keeping the configuration in force")]
    public static partial void Failed(ILogger logger, string trigger, string key, string message);

    [LoggerMessage(4042, LogLevel.Warning, "Configuration reload: {Key} changed, which takes effect only at restart; keeping the value in force")]
    public static partial void NeedsRestart(ILogger logger, string key);

    [LoggerMessage(4043, LogLevel.Information, "Watching {Path} for changes (reload on change, on SIGHUP and on the admin console's RELOAD)")]
    public static partial void Watching(ILogger logger, string path);

    [LoggerMessage(4044, LogLevel.Warning, "Could not watch {Path} for changes: {Reason}; SIGHUP and RELOAD still reload it")]
    public static partial void WatchFailed(ILogger logger, string path, string reason);

    [LoggerMessage(4045, LogLevel.Error, "Applying a reloaded configuration ({Trigger}) failed part-way")]
    public static partial void ApplyFailed(ILogger logger, string trigger, Exception exception);

    [LoggerMessage(4046, LogLevel.Information, "SIGHUP received: reloading {Path}")]
    public static partial void HangupReceived(ILogger logger, string path);

    [LoggerMessage(4047, LogLevel.Information, "SIGHUP was ignored in this process (started under nohup?); mproxy handles it now: SIGHUP reloads the configuration and does not end the process")]
    public static partial void HangupWasIgnored(ILogger logger);
}
