using MProxy.Grains.Storage;

namespace MProxy.Silo.Hosting;

/// <summary>
/// Creates or migrates the grain store's schema at start, retrying with backoff while the store is
/// unreachable; until then /readyz and the edge API answer 503 (edges keep serving on their leases).
/// </summary>
internal sealed partial class StoreReadiness(IGrainStore store, TimeProvider time, ILogger<StoreReadiness> log) : BackgroundService
{
    private volatile bool _ready;

    public bool Ready => _ready;

    public override async Task StartAsync(CancellationToken cancellationToken)
    {
        // Try once before the listener opens, so a healthy store is ready from the first request.
        await TryInitializeAsync(cancellationToken);
        await base.StartAsync(cancellationToken);
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var delay = TimeSpan.FromMilliseconds(500);
        while (!_ready && !stoppingToken.IsCancellationRequested)
        {
            await Task.Delay(delay, time, stoppingToken);
            await TryInitializeAsync(stoppingToken);
            delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, TimeSpan.FromSeconds(30).Ticks));
        }
    }

    private async Task TryInitializeAsync(CancellationToken cancellationToken)
    {
        try
        {
            await store.InitializeAsync(cancellationToken);
            _ready = true;
            StoreReady(log, store.Name);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            StoreNotReady(log, store.Name, e.Message);
        }
    }

    [LoggerMessage(EventId = 700, Level = LogLevel.Information, Message = "Grain store {Store} ready")]
    private static partial void StoreReady(ILogger logger, string store);

    [LoggerMessage(EventId = 701, Level = LogLevel.Warning, Message = "Grain store {Store} not ready: {Reason}")]
    private static partial void StoreNotReady(ILogger logger, string store, string reason);
}
