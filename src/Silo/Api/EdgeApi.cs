using System.Text.Json;
using MProxy.Abstractions.Policy;
using MProxy.Grains.Exchange;
using MProxy.Silo.Hosting;

namespace MProxy.Silo.Api;

/// <summary>
/// The edge API: <c>POST /v1/exchange</c>, one call per edge per tick, JSON
/// (<see cref="PolicyExchangeRequest"/> → <see cref="PolicyExchangeResponse"/>). 400 for a malformed
/// request, 503 while the grain store is unavailable (the edge then keeps its leases and retries).
/// </summary>
internal static partial class EdgeApi
{
    public const string ExchangePath = "/v1/exchange";

    public static void Map(WebApplication app) => app.MapPost(ExchangePath, ExchangeAsync);

    private static async Task<IResult> ExchangeAsync(HttpRequest http, PolicyExchangeService exchange, StoreReadiness readiness, ILoggerFactory logging, CancellationToken cancellationToken)
    {
        if (!readiness.Ready)
            return Results.Text("grain store not ready\n", statusCode: StatusCodes.Status503ServiceUnavailable);
        PolicyExchangeRequest? request;
        try
        {
            request = await JsonSerializer.DeserializeAsync(http.Body, PolicyJsonContext.Default.PolicyExchangeRequest, cancellationToken);
        }
        catch (JsonException e)
        {
            return Results.Text($"malformed exchange: {e.Message}\n", statusCode: StatusCodes.Status400BadRequest);
        }
        if (request is null)
            return Results.Text("empty exchange\n", statusCode: StatusCodes.Status400BadRequest);
        try
        {
            var response = await exchange.ExchangeAsync(request, cancellationToken);
            return Results.Json(response, PolicyJsonContext.Default.PolicyExchangeResponse);
        }
        catch (PolicyRequestException e)
        {
            return Results.Text($"{e.Message}\n", statusCode: StatusCodes.Status400BadRequest);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            ExchangeFailed(logging.CreateLogger("MProxy.Silo.EdgeApi"), request.Edge.Value, e);
            return Results.Text("exchange failed\n", statusCode: StatusCodes.Status503ServiceUnavailable);
        }
    }

    [LoggerMessage(EventId = 720, Level = LogLevel.Warning, Message = "Exchange with edge {Edge} failed")]
    private static partial void ExchangeFailed(ILogger logger, string edge, Exception exception);
}
