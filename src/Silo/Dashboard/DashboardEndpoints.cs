using MProxy.Abstractions.Policy;
using MProxy.Grains.Exchange;

namespace MProxy.Silo.Dashboard;

/// <summary>The dashboard: <c>GET /</c> (one self-contained HTML page, no CDN) and the JSON behind it, <c>GET /api/dashboard</c>.</summary>
internal static class DashboardEndpoints
{
    public const string ApiPath = "/api/dashboard";

    private static readonly Lazy<byte[]> Page = new(() =>
    {
        using var stream = typeof(DashboardEndpoints).Assembly.GetManifestResourceStream("MProxy.Silo.Dashboard.dashboard.html")
            ?? throw new InvalidOperationException("dashboard.html is not embedded");
        using var copy = new MemoryStream();
        stream.CopyTo(copy);
        return copy.ToArray();
    });

    public static void Map(WebApplication app)
    {
        app.MapGet("/", () => Results.Bytes(Page.Value, "text/html; charset=utf-8"));
        app.MapGet(ApiPath, async (PolicyDirectory directory, CancellationToken ct) =>
            Results.Json(await directory.SnapshotAsync(ct), PolicyJsonContext.Default.PolicySnapshot));
    }
}
