using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using MProxy.Abstractions.Policy;
using MProxy.Grains.Configuration;
using MProxy.Grains.Hosting;
using MProxy.Grains.Storage;

namespace MProxy.Grains.Exchange;

/// <summary>
/// The embedded mode's policy tier: the same grains, host and exchange as a silo, in-process on the
/// in-memory store. An edge with no silo configured talks to this one.
/// </summary>
public sealed class EmbeddedPolicyTier : IPolicyTier, IAsyncDisposable
{
    private readonly GrainHost _host;
    private readonly PolicyExchangeService _exchange;

    public EmbeddedPolicyTier(PolicyConfig config, TimeProvider time, ILoggerFactory? logging = null)
    {
        logging ??= NullLoggerFactory.Instance;
        Config = new PolicyConfigStore(config);
        _host = new GrainHost(new InMemoryGrainStore(), time, logging.CreateLogger<GrainHost>());
        Grains = new PolicyGrainFactory(_host, Config);
        _exchange = new PolicyExchangeService(Grains, logging.CreateLogger<PolicyExchangeService>());
        Directory = new PolicyDirectory(Grains);
    }

    /// <summary>Swap it to reload the policy (the edge's own configuration reload).</summary>
    public PolicyConfigStore Config { get; }

    public PolicyGrainFactory Grains { get; }

    /// <summary>The same read model a silo's dashboard shows, for the edge's admin API.</summary>
    public PolicyDirectory Directory { get; }

    public Task<PolicyExchangeResponse> ExchangeAsync(PolicyExchangeRequest request, CancellationToken cancellationToken) =>
        _exchange.ExchangeAsync(request, cancellationToken);

    public ValueTask DisposeAsync() => _host.DisposeAsync();
}
