namespace MProxy.Abstractions.Policy;

/// <summary>
/// The policy tier as an edge sees it: one batched exchange per tick. Implemented in-process (the
/// embedded mode: the grains on the in-memory store) and over HTTP/2 (a silo). A simulation
/// replaces it with a fake that can delay, drop or partition.
/// </summary>
public interface IPolicyTier
{
    Task<PolicyExchangeResponse> ExchangeAsync(PolicyExchangeRequest request, CancellationToken cancellationToken);
}
