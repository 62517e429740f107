using System.Net;
using System.Net.Http.Json;
using MProxy.Abstractions.Policy;

namespace MProxy.Edge.Policy;

/// <summary>
/// The policy tier as one or more silos over HTTP/2 cleartext (prior knowledge): <c>POST /v1/exchange</c>
/// with source-generated JSON. On a failed call the next one goes to the next silo in the list.
/// </summary>
public sealed class HttpPolicyTier : IPolicyTier, IDisposable
{
    public const string ExchangePath = "v1/exchange";

    private readonly HttpClient _http;
    private readonly IReadOnlyList<Uri> _silos;
    private int _current;

    public HttpPolicyTier(IReadOnlyList<Uri> silos, HttpMessageHandler? handler = null)
    {
        if (silos.Count == 0)
            throw new ArgumentException("at least one silo address is needed", nameof(silos));
        _silos = silos;
        _http = new HttpClient(handler ?? new SocketsHttpHandler
        {
            ConnectTimeout = TimeSpan.FromSeconds(2),
            PooledConnectionIdleTimeout = TimeSpan.FromMinutes(2),
            KeepAlivePingDelay = TimeSpan.FromSeconds(15),
            KeepAlivePingTimeout = TimeSpan.FromSeconds(5),
            KeepAlivePingPolicy = HttpKeepAlivePingPolicy.WithActiveRequests,
        })
        {
            DefaultRequestVersion = HttpVersion.Version20,
            DefaultVersionPolicy = HttpVersionPolicy.RequestVersionExact,
            // The policy client enforces its own per-call timeout with the injected clock.
            Timeout = Timeout.InfiniteTimeSpan,
        };
    }

    public HttpPolicyTier(Uri silo, HttpMessageHandler? handler = null)
        : this([silo], handler)
    {
    }

    /// <summary>The silo the next call goes to.</summary>
    public Uri Current => _silos[Volatile.Read(ref _current) % _silos.Count];

    public async Task<PolicyExchangeResponse> ExchangeAsync(PolicyExchangeRequest request, CancellationToken cancellationToken)
    {
        var silo = Current;
        try
        {
            using var message = new HttpRequestMessage(HttpMethod.Post, new Uri(silo, ExchangePath))
            {
                Content = JsonContent.Create(request, PolicyJsonContext.Default.PolicyExchangeRequest),
                Version = HttpVersion.Version20,
                VersionPolicy = HttpVersionPolicy.RequestVersionExact,
            };
            using var response = await _http.SendAsync(message, HttpCompletionOption.ResponseHeadersRead, cancellationToken).ConfigureAwait(false);
            if (!response.IsSuccessStatusCode)
            {
                var body = await response.Content.ReadAsStringAsync(cancellationToken).ConfigureAwait(false);
                throw new PolicyTierException($"silo {silo} answered {(int)response.StatusCode}: {body.Trim()}");
            }
            return await response.Content.ReadFromJsonAsync(PolicyJsonContext.Default.PolicyExchangeResponse, cancellationToken).ConfigureAwait(false)
                ?? throw new PolicyTierException($"silo {silo} answered an empty exchange");
        }
        catch (Exception e) when (e is HttpRequestException or PolicyTierException or System.Text.Json.JsonException or OperationCanceledException)
        {
            Interlocked.Increment(ref _current);
            if (e is HttpRequestException or System.Text.Json.JsonException)
                throw new PolicyTierException($"silo {silo}: {e.Message}", e);
            throw;
        }
    }

    public void Dispose() => _http.Dispose();
}

/// <summary>The policy tier could not be reached or refused the exchange.</summary>
public sealed class PolicyTierException : Exception
{
    public PolicyTierException(string message)
        : base(message)
    {
    }

    public PolicyTierException(string message, Exception inner)
        : base(message, inner)
    {
    }
}
