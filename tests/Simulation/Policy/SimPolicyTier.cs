using System.Text.Json;
using MProxy.Abstractions.Policy;
using MProxy.Edge.Policy;
using MProxy.Simulation.Core;

namespace MProxy.Simulation.Policy;

/// <summary>
/// An edge's view of the silos (the seam <see cref="IPolicyTier"/>), behaving as
/// <see cref="HttpPolicyTier"/> does — one silo at a time, the next one after a failure — over the
/// simulated network. Requests and responses go through the real JSON contract both ways. A silo
/// that is down refuses at once; a partition or a lost message leaves the call to the policy
/// client's own timeout.
/// </summary>
public sealed class SimPolicyTier(SimContext sim, SimNetwork network, IReadOnlyList<SimSilo> silos, int edge) : IPolicyTier
{
    private int _current;

    public async Task<PolicyExchangeResponse> ExchangeAsync(PolicyExchangeRequest request, CancellationToken cancellationToken)
    {
        sim.Clock.CheckThread("SimPolicyTier.ExchangeAsync");
        var silo = silos[(edge + _current) % silos.Count];
        var done = new TaskCompletionSource<PolicyExchangeResponse>();
        using var registration = cancellationToken.Register(() => done.TrySetCanceled(cancellationToken));
        var body = JsonSerializer.SerializeToUtf8Bytes(request, PolicyJsonContext.Default.PolicyExchangeRequest);
        network.Send(edge, silo.Index, $"exchange #{request.Sequence}", () =>
        {
            if (!silo.Up)
            {
                network.Send(edge, silo.Index, "refusal", () => done.TrySetException(new PolicyTierException($"silo{silo.Index}: connection refused")));
                return;
            }
            var received = JsonSerializer.Deserialize(body, PolicyJsonContext.Default.PolicyExchangeRequest)!;
            var response = silo.Exchange(received);
            var answer = JsonSerializer.SerializeToUtf8Bytes(response, PolicyJsonContext.Default.PolicyExchangeResponse);
            sim.Checks.OnSiloExchange(silo);
            network.Send(edge, silo.Index, $"answer #{request.Sequence}", () =>
                done.TrySetResult(JsonSerializer.Deserialize(answer, PolicyJsonContext.Default.PolicyExchangeResponse)!));
        });
        try
        {
            return await done.Task;
        }
        catch
        {
            _current++;
            throw;
        }
    }
}
