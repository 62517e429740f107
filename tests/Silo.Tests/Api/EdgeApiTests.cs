using System.Net;
using System.Text;
using Microsoft.Extensions.Logging.Abstractions;
using MProxy.Abstractions.Policy;
using MProxy.Edge.Policy;
using MProxy.TestSupport;

namespace MProxy.Silo.Tests.Api;

public sealed class EdgeApiTests
{
    private const string Policy = """
        tenants:
          - name: acme
            ruPerSecond: 100
            burstRu: 40
        backends:
          - name: app
            maxConnections: 10
        runaway:
          minExecutions: 2
          reject: { ruPerExecution: 1000 }
        """;

    private static CancellationToken Token => TestContext.Current.CancellationToken;

    private static PolicyExchangeRequest Request(string edge, long sequence = 1, double demand = 500) => new()
    {
        Edge = new EdgeId(edge),
        Sequence = sequence,
        Tenants = [new TenantUsageReport { Tenant = new TenantId("acme"), UsedRu = 12, DemandRuPerSecond = demand, Admitted = 3, Throttled = 1 }],
        Fingerprints = [new FingerprintCostReport { Tenant = new TenantId("acme"), Fingerprint = new FingerprintId(0xdead), Count = 4, TotalRu = 8000, MaxRu = 2500, Sample = "SELECT * FROM big" }],
        Backends = [new BackendSlotDemand { Backend = new BackendId("app"), Wanted = 6 }],
    };

    [Fact]
    public async Task Exchange_OverHttp2_AnswersLeasesVerdictsAndSlots()
    {
        await using var silo = await SiloServer.StartAsync(Policy);
        using var tier = new HttpPolicyTier(silo.EdgeApi);

        var response = await tier.ExchangeAsync(Request("edge-1"), Token);

        var lease = Assert.Single(response.Leases);
        Assert.Equal(100, lease.RuPerSecond, 6);
        Assert.Equal(40, lease.BurstRu, 6);
        Assert.True(lease.ValidUntil > response.ServerTime);
        var verdict = Assert.Single(response.Verdicts);
        Assert.Equal(RunawayAction.Reject, verdict.Action);
        Assert.Equal(new FingerprintId(0xdead), verdict.Fingerprint);
        var slots = Assert.Single(response.Backends);
        Assert.Equal(6, slots.Slots);
        Assert.Equal(10, slots.LimitSlots);
        Assert.Equal(1, response.LiveEdges);
        Assert.True(response.ConfigVersion > 0);
    }

    [Fact]
    public async Task Exchange_Http11Client_IsRefusedOnTheEdgePort()
    {
        await using var silo = await SiloServer.StartAsync(Policy);
        using var http = new HttpClient { DefaultRequestVersion = HttpVersion.Version11, DefaultVersionPolicy = HttpVersionPolicy.RequestVersionExact };

        using var response = await http.PostAsync(new Uri(silo.EdgeApi, "v1/exchange"), new StringContent("{}"), Token);

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Contains("HTTP/2 only", await response.Content.ReadAsStringAsync(Token), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Exchange_MalformedJson_Returns400()
    {
        await using var silo = await SiloServer.StartAsync(Policy);
        using var http = new HttpClient { DefaultRequestVersion = HttpVersion.Version20, DefaultVersionPolicy = HttpVersionPolicy.RequestVersionExact };

        using var broken = await http.PostAsync(new Uri(silo.EdgeApi, "v1/exchange"), new StringContent("{\"edge\": 5", Encoding.UTF8, "application/json"), Token);
        using var noEdge = await http.PostAsync(new Uri(silo.EdgeApi, "v1/exchange"), new StringContent("{\"edge\": \"\"}", Encoding.UTF8, "application/json"), Token);

        Assert.Equal(HttpStatusCode.BadRequest, broken.StatusCode);
        Assert.Equal(HttpStatusCode.BadRequest, noEdge.StatusCode);
    }

    [Fact]
    public async Task Health_BothEndpoints_AnswerOnTheDashboardPort()
    {
        await using var silo = await SiloServer.StartAsync(Policy);
        using var http = new HttpClient();

        Assert.Equal("ok\n", await http.GetStringAsync(new Uri(silo.Dashboard, "healthz"), Token));
        Assert.Equal("ready\n", await http.GetStringAsync(new Uri(silo.Dashboard, "readyz"), Token));
    }

    [Fact]
    public async Task DashboardApi_AfterTwoEdgesReport_ShowsEdgesTenantFingerprintAndBackend()
    {
        await using var silo = await SiloServer.StartAsync(Policy);
        using var tier = new HttpPolicyTier(silo.EdgeApi);
        await tier.ExchangeAsync(Request("edge-1"), Token);
        await tier.ExchangeAsync(Request("edge-2") with { Degraded = true }, Token);
        using var http = new HttpClient();

        var json = await http.GetStringAsync(new Uri(silo.Dashboard, "api/dashboard"), Token);
        var snapshot = System.Text.Json.JsonSerializer.Deserialize(json, PolicyJsonContext.Default.PolicySnapshot)!;

        Assert.Equal(["edge-1", "edge-2"], snapshot.Edges.Select(e => e.Edge.Value));
        Assert.True(snapshot.Edges.Single(e => e.Edge.Value == "edge-2").Degraded);
        var tenant = Assert.Single(snapshot.Tenants);
        Assert.Equal(100, tenant.BudgetRuPerSecond);
        Assert.Equal(2, tenant.LiveEdges);
        Assert.Equal(24, tenant.TotalUsedRu, 6);
        Assert.Equal(2, tenant.Throttled);
        Assert.True(tenant.CommittedRuPerSecond <= 100 + 1e-9);
        Assert.Equal(RunawayAction.Reject, Assert.Single(snapshot.Fingerprints).Verdict!.Action);
        Assert.True(Assert.Single(snapshot.Backends).CommittedSlots <= 10);
    }

    [Fact]
    public async Task PolicyClient_SiloStopsAndRestarts_DegradesToLocalShareAndRecovers()
    {
        var time = new ManualTimeProvider(DateTimeOffset.UtcNow);
        var silo = await SiloServer.StartAsync(Policy);
        var port = silo.Options.Listen.Port;
        using var tier = new HttpPolicyTier(silo.EdgeApi);
        using var client = new PolicyClient(tier, new PolicyClientOptions { EdgeId = "edge-1", JitterSeed = 1 }, time, NullLogger<PolicyClient>.Instance);
        client.RecordAdmitted("acme", 50);
        await client.ExchangeOnceAsync(Token);
        Assert.True(client.TryGetAllowance("acme", out var leased));
        Assert.Equal(AllowanceSource.Lease, leased.Source);

        await silo.DisposeAsync();
        await client.ExchangeOnceAsync(Token);
        Assert.Equal(PolicyClientState.Retrying, client.Status.State);
        time.Advance(TimeSpan.FromSeconds(11)); // past the lease period (10 s by default)
        await client.ExchangeOnceAsync(Token);
        Assert.True(client.IsDegraded);
        Assert.True(client.TryGetAllowance("acme", out var local));
        Assert.Equal(AllowanceSource.LocalShare, local.Source);
        Assert.Equal(100, local.RuPerSecond, 6); // the only live edge: the whole budget

        await using var restarted = await RestartOnAsync(port);
        await client.ExchangeOnceAsync(Token);

        Assert.Equal(PolicyClientState.Connected, client.Status.State);
        Assert.True(client.TryGetAllowance("acme", out var again));
        Assert.Equal(AllowanceSource.Lease, again.Source);
    }

    /// <summary>
    /// A silo on the port the stopped one had (the policy client knows only that address). The old
    /// one's last connections can hold the port for a moment after it stopped — a clean-clone CI run
    /// once failed the bind with "address already in use" — so the bind is tried again for a while.
    /// </summary>
    private static async Task<SiloServer> RestartOnAsync(int port)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (true)
        {
            try
            {
                return await SiloServer.StartAsync(Policy, edgePort: port);
            }
            catch (IOException e) when (e.InnerException is Microsoft.AspNetCore.Connections.AddressInUseException && DateTime.UtcNow < deadline)
            {
                await Task.Delay(100, TestContext.Current.CancellationToken);
            }
        }
    }

    [Fact]
    public async Task Exchange_PostgresStore_SchemaIsCreatedAndStateSurvivesSiloRestart()
    {
        await using var postgres = await PostgresServer.StartAsync();
        await postgres.ExecuteAsync("CREATE DATABASE policy");
        var store = postgres.ConnectionString(database: "policy");
        await using (var silo = await SiloServer.StartAsync(Policy, store))
        {
            using var tier = new HttpPolicyTier(silo.EdgeApi);
            await tier.ExchangeAsync(Request("edge-1"), Token);
        }

        await using var again = await SiloServer.StartAsync(Policy, store);
        using var http = new HttpClient();
        Assert.Equal("ready\n", await http.GetStringAsync(new Uri(again.Dashboard, "readyz"), Token));
        var snapshot = System.Text.Json.JsonSerializer.Deserialize(await http.GetStringAsync(new Uri(again.Dashboard, "api/dashboard"), Token), PolicyJsonContext.Default.PolicySnapshot)!;
        Assert.Equal(12, Assert.Single(snapshot.Tenants).TotalUsedRu, 6);
        Assert.Equal(4L, await postgres.ScalarAsync("SELECT count(*) FROM mproxy.grains WHERE version > 0", "policy"));
    }
}
