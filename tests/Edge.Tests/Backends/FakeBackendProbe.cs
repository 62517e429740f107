using System.Collections.Concurrent;
using MProxy.Edge.Backends;
using MProxy.Edge.Configuration;

namespace MProxy.Edge.Tests.Backends;

/// <summary>A scriptable <see cref="IBackendProbe"/>: each host answers what the test last set, synchronously.</summary>
internal sealed class FakeBackendProbe : IBackendProbe
{
    private readonly ConcurrentDictionary<HostPort, Func<BackendProbeResult>> _answers = new();
    private readonly ConcurrentDictionary<HostPort, int> _calls = new();

    public void Primary(HostPort host, Lsn lsn, uint timeline = 1) => _answers[host] = () => BackendProbeResult.Primary(lsn, timeline);

    public void Replica(HostPort host, Lsn replay) => _answers[host] = () => BackendProbeResult.Replica(replay, replay);

    public void Down(HostPort host) => _answers[host] = () => BackendProbeResult.Failed("connection refused");

    /// <summary>The host's probe never completes (until cancelled, if <paramref name="honourCancel"/>).</summary>
    public void Hang(HostPort host, bool honourCancel) => _answers[host] = () => throw new HangException(honourCancel);

    public int Calls(HostPort host) => _calls.TryGetValue(host, out var n) ? n : 0;

    public async ValueTask<BackendProbeResult> ProbeAsync(HostPort endpoint, CancellationToken cancellationToken)
    {
        _calls.AddOrUpdate(endpoint, 1, (_, n) => n + 1);
        if (!_answers.TryGetValue(endpoint, out var answer))
            return BackendProbeResult.Failed("no such host");
        try
        {
            return answer();
        }
        catch (HangException hang)
        {
            await Task.Delay(Timeout.Infinite, hang.HonourCancel ? cancellationToken : CancellationToken.None);
            throw;
        }
    }

    private sealed class HangException(bool honourCancel) : Exception
    {
        public bool HonourCancel { get; } = honourCancel;
    }
}
