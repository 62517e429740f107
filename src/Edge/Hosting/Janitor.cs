using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace MProxy.Edge.Hosting;

/// <summary>Periodic upkeep (like pgbouncer's janitor.c): every registered task runs once per tick.</summary>
public interface IPeriodicTask
{
    string Name { get; }

    void Tick();
}

/// <summary>The one scheduler of the edge's periodic work: idle reaping, lifetimes, minimum pool sizes.</summary>
internal sealed partial class Janitor(IEnumerable<IPeriodicTask> tasks, TimeProvider time, ILogger<Janitor> log) : BackgroundService
{
    public static readonly TimeSpan Interval = TimeSpan.FromSeconds(1);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(Interval, time);
        while (await timer.WaitForNextTickAsync(stoppingToken))
        {
            foreach (var task in tasks)
            {
                try
                {
                    task.Tick();
                }
                catch (Exception e)
                {
                    TaskFailed(log, task.Name, e);
                }
            }
        }
    }

    [LoggerMessage(100, LogLevel.Error, "Periodic task {Task} failed")]
    private static partial void TaskFailed(ILogger logger, string task, Exception exception);
}
