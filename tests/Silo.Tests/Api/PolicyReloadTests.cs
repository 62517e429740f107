using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using MProxy.Abstractions.Policy;
using MProxy.Edge.Policy;
using MProxy.Grains.Configuration;
using MProxy.Silo.Hosting;

namespace MProxy.Silo.Tests.Api;

public sealed class PolicyReloadTests
{
    private static CancellationToken Token => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Check_PolicyFileChanged_NewBudgetAndVersionReachEdges()
    {
        await using var silo = await SiloServer.StartAsync("tenants: [{ name: acme, ruPerSecond: 100 }]");
        var config = silo.Services.GetRequiredService<PolicyConfigStore>();
        var watcher = silo.Services.GetServices<IHostedService>().OfType<PolicyFileWatcher>().Single();
        var before = config.Current.Version;

        await File.WriteAllTextAsync(silo.Options.PolicyFile!, "tenants: [{ name: acme, ruPerSecond: 300 }]", Token);
        watcher.Check(silo.Options.PolicyFile!);

        Assert.NotEqual(before, config.Current.Version);
        using var tier = new HttpPolicyTier(silo.EdgeApi);
        var response = await tier.ExchangeAsync(new PolicyExchangeRequest
        {
            Edge = new EdgeId("edge-1"),
            Tenants = [new TenantUsageReport { Tenant = new TenantId("acme"), DemandRuPerSecond = 1000 }],
        }, Token);
        Assert.Equal(config.Current.Version, response.ConfigVersion);
        Assert.Equal(300, response.Leases[0].BudgetRuPerSecond);
    }

    [Fact]
    public async Task Check_PolicyFileBroken_PreviousPolicyStaysInForce()
    {
        await using var silo = await SiloServer.StartAsync("tenants: [{ name: acme, ruPerSecond: 100 }]");
        var config = silo.Services.GetRequiredService<PolicyConfigStore>();
        var watcher = silo.Services.GetServices<IHostedService>().OfType<PolicyFileWatcher>().Single();
        var before = config.Current;

        await File.WriteAllTextAsync(silo.Options.PolicyFile!, "tenants: [{ name: acme }]", Token);
        watcher.Check(silo.Options.PolicyFile!);

        Assert.Same(before, config.Current);
    }
}
