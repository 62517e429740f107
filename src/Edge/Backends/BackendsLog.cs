using Microsoft.Extensions.Logging;

namespace MProxy.Edge.Backends;

/// <summary>Structured log events of backend monitoring and routing (event ids 2000–2099). Never secrets.</summary>
internal static partial class BackendsLog
{
    [LoggerMessage(2000, LogLevel.Information, "Monitoring {Hosts} host(s) of database {Database} ({Mode} topology) every {IntervalMs} ms")]
    public static partial void MonitorStarted(ILogger logger, string database, int hosts, TopologyMode mode, double intervalMs);

    [LoggerMessage(2001, LogLevel.Debug, "Health check of {Endpoint} (database {Database}) failed: {Reason}")]
    public static partial void ProbeFailed(ILogger logger, string database, string endpoint, string reason);

    [LoggerMessage(2002, LogLevel.Error, "A monitoring round of database {Database} failed")]
    public static partial void RoundFailed(ILogger logger, string database, Exception exception);

    [LoggerMessage(2003, LogLevel.Information, "Stopped monitoring database {Database}")]
    public static partial void MonitorStopped(ILogger logger, string database);

    [LoggerMessage(2010, LogLevel.Warning, "Breaker of {Endpoint} (database {Database}) opened after {Failures} consecutive failure(s), opening {Trips}; next trial in {CooldownMs} ms: {Reason}")]
    public static partial void BreakerOpened(ILogger logger, string database, string endpoint, int failures, int trips, double cooldownMs, string reason);

    [LoggerMessage(2011, LogLevel.Information, "Breaker of {Endpoint} (database {Database}) is half-open: the next health check is its trial")]
    public static partial void BreakerHalfOpen(ILogger logger, string database, string endpoint);

    [LoggerMessage(2012, LogLevel.Information, "Breaker of {Endpoint} (database {Database}) closed: {Reason}")]
    public static partial void BreakerClosed(ILogger logger, string database, string endpoint, string reason);

    [LoggerMessage(2020, LogLevel.Warning, "Primary of database {Database} is now {Primary} (was {Previous}), epoch {Epoch}")]
    public static partial void PrimaryChanged(ILogger logger, string database, string primary, string previous, long epoch);

    [LoggerMessage(2021, LogLevel.Error, "Database {Database} has no usable primary (was {Previous}), epoch {Epoch}: writes wait up to {WaitMs} ms")]
    public static partial void PrimaryLost(ILogger logger, string database, string previous, long epoch, double waitMs);

    [LoggerMessage(2022, LogLevel.Warning, "Host {Endpoint} of database {Database} claims to be a primary (timeline {Timeline}) but {Primary} is the primary (timeline {PrimaryTimeline}): it gets no traffic")]
    public static partial void StalePrimary(ILogger logger, string database, string endpoint, uint timeline, string primary, uint primaryTimeline);

    [LoggerMessage(2030, LogLevel.Warning, "Replica {Endpoint} of database {Database} stops taking reads ({Reason}): lag {LagBytes} bytes, {LagMs} ms")]
    public static partial void ReplicaEjected(ILogger logger, string database, string endpoint, ReadEligibility reason, long? lagBytes, double? lagMs);

    [LoggerMessage(2031, LogLevel.Information, "Replica {Endpoint} of database {Database} takes reads again: lag {LagBytes} bytes, {LagMs} ms")]
    public static partial void ReplicaAdmitted(ILogger logger, string database, string endpoint, long? lagBytes, double? lagMs);

    [LoggerMessage(2040, LogLevel.Warning, "No usable primary for database {Database} within {WaitMs} ms")]
    public static partial void PrimaryWaitTimedOut(ILogger logger, string database, double waitMs);

    [LoggerMessage(2050, LogLevel.Debug, "Monitoring connection to {Endpoint} opened as {User}")]
    public static partial void ProbeConnected(ILogger logger, string endpoint, string user);

    [LoggerMessage(2051, LogLevel.Debug, "Monitoring connection to {Endpoint} closed: {Reason}")]
    public static partial void ProbeDisconnected(ILogger logger, string endpoint, string reason);
}
