using System.Globalization;
using MProxy.Edge.Hosting;
using MProxy.Edge.Policy;
using MProxy.TestSupport;

namespace MProxy.Integration.Tests.Observability;

/// <summary>
/// SIGHUP reloads the configuration file without a restart. It signals the whole test process, so it
/// runs alone (<see cref="RunsAlone"/>): CI once saw it time out with the rest of the suite running.
/// </summary>
[Collection(RunsAlone.Name)]
public sealed class SighupReloadTests(PostgresFixture postgres) : IAsyncLifetime
{
    private PostgresServer Server => postgres.Server;

    public async ValueTask InitializeAsync() => await ReloadTests.CreateTenantRoleAsync(Server);

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;

    [Fact]
    public async Task Sighup_TenantBudgetChanges_ClientStaysConnected()
    {
        await using var edge = await ObservedEdge.StartAsync(ReloadTests.Config(Server, 100_000, watchFile: false));
        await using var client = await edge.OpenAsync(ReloadTests.Tenant);
        var clientId = await ReloadTests.BackendPidAsync(client);
        await edge.RewriteAsync(ReloadTests.Config(Server, 3_000));
        Assert.Equal(100_000, ReloadTests.Budget(edge)); // not watching the file: nothing happens until the signal
        var reloader = edge.Get<ConfigReloader>();

        var kill = await ProcessRunner.RunAsync("kill", ["-HUP", Environment.ProcessId.ToString(CultureInfo.InvariantCulture)]);

        Assert.True(kill.ExitCode == 0, kill.Output);
        Assert.True(await ObservedEdge.EventuallyAsync(() => Task.FromResult(reloader.Generation == 2)),
            $"SIGHUP did not reload (generation {reloader.Generation}); the edge logged: {string.Join(" | ", edge.Logs().Select(l => l.Message))}");
        Assert.True(await ObservedEdge.EventuallyAsync(() => Task.FromResult(ReloadTests.Budget(edge) == 3_000)),
            $"the reloaded budget is not in force: the bucket refills at {ReloadTests.Budget(edge)} RU/s, the policy tier allows {Allowance(edge)}");
        Assert.Equal(clientId, await ReloadTests.BackendPidAsync(client));
        Assert.Equal(2, reloader.Generation);
    }

    private static string Allowance(ObservedEdge edge) =>
        edge.Get<PolicyClient>().TryGetAllowance(ReloadTests.Tenant, out var allowance) ? allowance.ToString() : "nothing";
}
