using Microsoft.Playwright;
using MProxy.Abstractions.Policy;
using MProxy.Edge.Policy;

namespace MProxy.Silo.Tests.Dashboard;

/// <summary>The dashboard in real headless Chromium (Debian's), driven by Playwright; no browser is downloaded.</summary>
public sealed class DashboardPageTests
{
    private static CancellationToken Token => TestContext.Current.CancellationToken;

    private static Task<IBrowser> LaunchAsync(IPlaywright playwright) => playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions
    {
        ExecutablePath = "/usr/bin/chromium",
        Headless = true,
        Args = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    });

    private static PolicyExchangeRequest Report(string edge, string tenant) => new()
    {
        Edge = new EdgeId(edge),
        Sequence = 1,
        Tenants = [new TenantUsageReport { Tenant = new TenantId(tenant), UsedRu = 5, DemandRuPerSecond = 20 }],
    };

    [Fact]
    public async Task Dashboard_EdgesReport_ShowsTenantAndUpdatesWithoutReload()
    {
        // Edges report once here: keep them live for the whole test, however slow the browser starts.
        await using var silo = await SiloServer.StartAsync("""
            edgeLivenessMs: 600000
            leasePeriodMs: 600000
            tenants:
              - name: acme
                ruPerSecond: 250
            """);
        using var tier = new HttpPolicyTier(silo.EdgeApi);
        await tier.ExchangeAsync(Report("edge-1", "acme"), Token);
        using var playwright = await Playwright.CreateAsync();
        await using var browser = await LaunchAsync(playwright);
        var page = await browser.NewPageAsync();

        await page.GotoAsync(new Uri(silo.Dashboard, "?refresh=200").ToString());
        var acme = page.Locator("[data-testid=tenants] tr[data-tenant='acme']");
        await Assertions.Expect(acme).ToContainTextAsync("250");
        await Assertions.Expect(page.Locator("[data-testid=edges] tr[data-edge='edge-1']")).ToContainTextAsync("live");
        await page.EvaluateAsync("() => { window.__sameDocument = true; }");

        await tier.ExchangeAsync(Report("edge-2", "globex"), Token);

        await Assertions.Expect(page.Locator("[data-testid=tenants] tr[data-tenant='globex']")).ToContainTextAsync("unlimited");
        await Assertions.Expect(page.Locator("[data-testid=edges] tr[data-edge='edge-2']")).ToBeVisibleAsync();
        Assert.True(await page.EvaluateAsync<bool>("() => window.__sameDocument === true"), "the page reloaded instead of updating in place");
    }

    [Fact]
    public async Task Dashboard_SiloStops_ShowsTheErrorInsteadOfStaleSilence()
    {
        var silo = await SiloServer.StartAsync();
        using var playwright = await Playwright.CreateAsync();
        await using var browser = await LaunchAsync(playwright);
        var page = await browser.NewPageAsync();
        await page.GotoAsync(new Uri(silo.Dashboard, "?refresh=200").ToString());
        await Assertions.Expect(page.Locator("#status")).ToContainTextAsync("policy version");

        await silo.DisposeAsync();

        await Assertions.Expect(page.Locator("#status")).ToContainTextAsync("cannot reach the silo");
    }
}
