using System.Threading.Channels;
using MProxy.Abstractions.Policy;

namespace MProxy.Edge.Tests.Policy;

/// <summary>A policy tier the test scripts: answers with a function of the request, or fails, and records every request.</summary>
internal sealed class ScriptedPolicyTier : IPolicyTier
{
    private readonly Channel<PolicyExchangeRequest> _calls = Channel.CreateUnbounded<PolicyExchangeRequest>();

    public Func<PolicyExchangeRequest, PolicyExchangeResponse>? Answer { get; set; }

    public bool Down { get; set; }

    public List<PolicyExchangeRequest> Requests { get; } = [];

    public ChannelReader<PolicyExchangeRequest> Calls => _calls.Reader;

    public Task<PolicyExchangeResponse> ExchangeAsync(PolicyExchangeRequest request, CancellationToken cancellationToken)
    {
        lock (Requests)
            Requests.Add(request);
        _calls.Writer.TryWrite(request);
        if (Down || Answer is null)
            throw new HttpRequestException("connection refused");
        return Task.FromResult(Answer(request));
    }
}
