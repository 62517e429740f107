using MProxy.Abstractions.Policy;
using MProxy.Grains.Configuration;
using MProxy.Grains.Exchange;
using MProxy.Grains.Hosting;
using MProxy.Grains.Storage;
using MProxy.Simulation.Core;

namespace MProxy.Simulation.Policy;

/// <summary>
/// One silo process: the real grain host, grain factory and exchange service, on the grain store
/// all silos share (the PostgreSQL store in a cluster; the in-memory store here, which keeps state
/// as serialized bytes just the same). A crash loses the process — activations, caches, membership
/// view — and a restart builds a new one on the same store. Its clock may be skewed.
/// </summary>
public sealed class SimSilo
{
    private readonly SimContext _sim;
    private readonly IGrainStore _store;
    private readonly PolicyConfigStore _config;
    private readonly TimeProvider _time;
    private GrainHost? _host;
    private PolicyExchangeService? _service;
    private int _incarnation;

    public SimSilo(SimContext sim, int index, IGrainStore store, PolicyConfigStore config, TimeSpan skew)
    {
        _sim = sim;
        Index = index;
        _store = store;
        _config = config;
        _time = skew == TimeSpan.Zero ? sim.Clock : new SkewedTime(sim.Clock, skew);
        Skew = skew;
        Start();
    }

    public int Index { get; }

    public TimeSpan Skew { get; }

    public bool Up => _service is not null;

    public PolicyGrainFactory? Grains { get; private set; }

    public long Exchanges { get; private set; }

    private void Start()
    {
        _incarnation++;
        _host = new GrainHost(_store, _time);
        Grains = new PolicyGrainFactory(_host, _config);
        _service = new PolicyExchangeService(Grains, parallelism: 1);
    }

    public void Crash()
    {
        if (_host is null)
            return;
        _sim.Trace.Write("silo" + Index, "CRASH");
        // Dispose completes synchronously: it only stops the collection timer.
        _ = _host.DisposeAsync();
        _host = null;
        _service = null;
        Grains = null;
    }

    public void Restart()
    {
        if (_host is not null)
            return;
        Start();
        _sim.Trace.Write("silo" + Index, $"RESTART (incarnation {_incarnation})");
    }

    /// <summary>
    /// Serves one exchange with the real service. With the in-memory store and parallelism 1 it
    /// completes synchronously on the driver's thread; anything else would be a determinism escape.
    /// </summary>
    public PolicyExchangeResponse Exchange(PolicyExchangeRequest request)
    {
        var service = _service ?? throw new InvalidOperationException("the silo is down");
        var task = service.ExchangeAsync(request, CancellationToken.None);
        if (!task.IsCompleted)
        {
            _sim.Checks.Fail("determinism", $"silo{Index}: the exchange did not complete synchronously (it would have run on another thread)");
            throw new InvalidOperationException("exchange pending");
        }
        Exchanges++;
        return task.GetAwaiter().GetResult();
    }

    /// <summary>A clock that reads <paramref name="skew"/> ahead of (or behind) the simulation's; timers are the simulation's.</summary>
    private sealed class SkewedTime(SimClock clock, TimeSpan skew) : TimeProvider
    {
        public override DateTimeOffset GetUtcNow() => clock.GetUtcNow() + skew;

        public override long GetTimestamp() => clock.GetTimestamp();

        public override long TimestampFrequency => clock.TimestampFrequency;

        public override TimeZoneInfo LocalTimeZone => TimeZoneInfo.Utc;

        public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period) =>
            clock.CreateTimer(callback, state, dueTime, period);
    }
}
