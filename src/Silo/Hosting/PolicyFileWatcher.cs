using MProxy.Grains.Configuration;

namespace MProxy.Silo.Hosting;

/// <summary>Reloads the policy file when its content changes; an invalid file is logged and the policy in force kept.</summary>
internal sealed partial class PolicyFileWatcher(SiloOptions options, PolicyConfigStore config, TimeProvider time, ILogger<PolicyFileWatcher> log) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (options.PolicyFile is not { } path)
            return;
        PolicyLoaded(log, path, config.Current.Version, config.Current.Tenants.Count, config.Current.Backends.Count);
        using var timer = new PeriodicTimer(options.PolicyReloadInterval, time);
        while (await timer.WaitForNextTickAsync(stoppingToken))
            Check(path);
    }

    internal void Check(string path)
    {
        try
        {
            var next = PolicyConfigLoader.LoadFile(path);
            if (next.Version == config.Current.Version)
                return;
            config.Swap(next);
            PolicyLoaded(log, path, next.Version, next.Tenants.Count, next.Backends.Count);
        }
        catch (Exception e) when (e is PolicyConfigException or IOException)
        {
            PolicyRejected(log, path, e.Message);
        }
    }

    [LoggerMessage(EventId = 710, Level = LogLevel.Information, Message = "Policy {Path} version {Version} in force: {Tenants} tenants, {Backends} backends")]
    private static partial void PolicyLoaded(ILogger logger, string path, long version, int tenants, int backends);

    [LoggerMessage(EventId = 711, Level = LogLevel.Error, Message = "Policy {Path} not reloaded, the previous one stays in force: {Reason}")]
    private static partial void PolicyRejected(ILogger logger, string path, string reason);
}
