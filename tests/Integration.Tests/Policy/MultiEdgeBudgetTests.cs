using System.Diagnostics;
using MProxy.Edge.Policy;
using MProxy.Edge.Qos;
using MProxy.TestSupport;
using Npgsql;

namespace MProxy.Integration.Tests.Policy;

/// <summary>
/// One tenant's global budget shared by three edges through a silo that runs as its own process on
/// the PostgreSQL grain store: enforced across the edges, kept (on local shares) while the silo is
/// down, and handed back to the silo when it returns.
/// </summary>
/// <remarks>
/// The three edges are three complete edge hosts (each its own listener, pools, QoS gate and policy
/// client with its own HTTP/2 connection to the silo) in this test process, so that each one's
/// admitted RU can be read exactly.
/// <para>
/// The test measures that the edges spend the whole budget (±10 %), which holds only while their
/// clients can: a <c>SELECT 1</c> is charged 0.5 RU per millisecond of latency, so on a machine
/// saturated by the rest of the suite a stalled query costs more than an edge's debt bound (the
/// excess is forgiven, not booked) while its bucket, full, drops the refill nobody takes — CI saw
/// 0.86× that way, one edge's exchanges timing out at the same moment. So it runs alone
/// (<see cref="RunsAlone"/>), with four clients per edge over a pool of two (admitted clients queue
/// for a connection holding their admission, so the bucket is drained continuously) and a burst
/// that rides out a half-second stall.
/// </para>
/// </remarks>
[Collection(RunsAlone.Name)]
public sealed class MultiEdgeBudgetTests(PostgresFixture postgres)
{
    private const double Budget = 90;      // RU/s for the tenant, over all edges
    private const double Burst = 45;
    private const int LeasePeriodMs = 3000;

    private static CancellationToken Token => TestContext.Current.CancellationToken;

    private PostgresServer Server => postgres.Server;

    [Fact]
    public async Task ThreeEdges_ShareOneBudget_KeepServingWhileTheSiloIsDown_AndConvergeWhenItReturns()
    {
        var storeDatabase = $"policy_{Guid.NewGuid():n}";
        await Server.ExecuteAsync($"CREATE DATABASE {storeDatabase}");
        var policyFile = Path.Combine(Path.GetTempPath(), $"mproxy-policy-{Guid.NewGuid():n}.yaml");
        await File.WriteAllTextAsync(policyFile, $"""
            leasePeriodMs: {LeasePeriodMs}
            exchangeIntervalMs: 500
            edgeLivenessMs: 2000
            tenants:
              - {"{"} name: app, ruPerSecond: {Budget}, burstRu: {Burst} {"}"}
            """, Token);
        int edgePort = FreePort.Next(), dashboardPort = FreePort.Next();
        var store = Server.ConnectionString(database: storeDatabase);
        var silo = await SiloProcess.StartAsync(edgePort, dashboardPort, store, policyFile, Token);
        var edges = new List<EdgeServer>();
        using var stop = new CancellationTokenSource();
        var load = new List<Task>();
        try
        {
            for (var i = 1; i <= 3; i++)
                edges.Add(await EdgeServer.StartAsync(EdgeConfig(silo.EdgeApi, $"edge-{i}")));
            foreach (var edge in edges)
                for (var c = 0; c < 4; c++)
                    load.Add(RunClientAsync(edge, stop.Token));

            // 1. All three lease from the silo; the admitted RU over 20 s is the budget (±10%).
            await WaitUntilAsync(() => edges.All(e => Allowance(e) is { Source: AllowanceSource.Lease }), "every edge holds a lease", silo);
            await Task.Delay(TimeSpan.FromSeconds(3), Token); // past the local default and the first leases' ramp
            var (shared, sharedSeconds) = await AdmittedAsync(edges, TimeSpan.FromSeconds(20));
            Assert.True(shared >= Budget * sharedSeconds * 0.9 && shared <= Budget * sharedSeconds * 1.1,
                $"admitted {shared:F0} RU in {sharedSeconds:F1} s across the edges; the budget is {Budget * sharedSeconds:F0}. {Describe(edges)}");

            // 2. The silo dies. Each edge spends its lease to expiry, then a local share (budget ÷ 3):
            //    all keep serving and the aggregate stays within the budget plus one lease period.
            await silo.KillAsync();
            var down = Stopwatch.StartNew();
            var before = Booked(edges);
            await WaitUntilAsync(() => edges.All(e => Client(e).IsDegraded), "every edge degrades to a local share", silo);
            var perEdge = edges.Select(e => Account(e).Bucket.TotalBooked).ToArray();
            await Task.Delay(TimeSpan.FromSeconds(3), Token);
            for (var i = 0; i < edges.Count; i++)
                Assert.True(Account(edges[i]).Bucket.TotalBooked - perEdge[i] > 1,
                    $"edge-{i + 1} stopped serving while the silo was down. {Describe(edges)}; failed clients: {string.Join("; ", load.Where(t => t.IsFaulted).Select(t => t.Exception!.InnerException!.Message))}");
            foreach (var edge in edges)
                Assert.Equal(AllowanceSource.LocalShare, Allowance(edge)!.Value.Source);
            var outage = Booked(edges) - before;
            var outageSeconds = down.Elapsed.TotalSeconds;
            Assert.True(outage <= Budget * (outageSeconds + LeasePeriodMs / 1000.0) + 3 * Burst,
                $"admitted {outage:F0} RU in {outageSeconds:F1} s without the silo; the bound is {Budget * (outageSeconds + LeasePeriodMs / 1000.0) + 3 * Burst:F0}");

            // 3. The silo comes back (same store, same address): the edges lease again without a
            //    restart and the budget holds again.
            await silo.DisposeAsync();
            silo = await SiloProcess.StartAsync(edgePort, dashboardPort, store, policyFile, Token);
            await WaitUntilAsync(() => edges.All(e => !Client(e).IsDegraded && Allowance(e) is { Source: AllowanceSource.Lease }), "every edge leases again", silo);
            await Task.Delay(TimeSpan.FromSeconds(2), Token);
            var (again, againSeconds) = await AdmittedAsync(edges, TimeSpan.FromSeconds(10));
            Assert.True(again >= Budget * againSeconds * 0.9 && again <= Budget * againSeconds * 1.1,
                $"admitted {again:F0} RU in {againSeconds:F1} s after the silo returned; the budget is {Budget * againSeconds:F0}. {Describe(edges)}");
        }
        finally
        {
            await stop.CancelAsync();
            await Task.WhenAll(load.Select(t => t.ContinueWith(_ => { }, TaskScheduler.Default)));
            foreach (var edge in edges)
                await edge.DisposeAsync();
            await silo.DisposeAsync();
            File.Delete(policyFile);
        }
        foreach (var task in load)
            Assert.Null(task.Exception); // no client saw an error, in any phase
    }

    private string EdgeConfig(Uri silo, string edgeId) => $"""
        users:
          - name: app
            password: {PostgresServer.Password}
        databases:
          - name: app
            primary: 127.0.0.1:{Server.Port}
            serverUser: app
            serverPassword: {PostgresServer.Password}
        pool: {"{"} size: 2, waitTimeoutMs: 10000 {"}"}
        qos:
          groups:
            - {"{"} name: shared, ruPerSecond: {Budget / 3}, burst: 5, debtMax: 60, maxBudgetWaitMs: 10000 {"}"}
          tenants:
            - {"{"} name: app, group: shared {"}"}
        policy:
          silos: [{silo}]
          edgeId: {edgeId}
          callTimeoutMs: 1000
          backoffBaseMs: 200
          backoffMaxMs: 1000
        """;

    private static async Task RunClientAsync(EdgeServer edge, CancellationToken cancellationToken)
    {
        await using var connection = await edge.OpenAsync();
        while (!cancellationToken.IsCancellationRequested)
            await new NpgsqlCommand("SELECT 1", connection).ExecuteScalarAsync(CancellationToken.None);
    }

    private static async Task<(double Ru, double Seconds)> AdmittedAsync(List<EdgeServer> edges, TimeSpan window)
    {
        var before = Booked(edges);
        var clock = Stopwatch.StartNew();
        await Task.Delay(window, Token);
        return (Booked(edges) - before, clock.Elapsed.TotalSeconds);
    }

    private static string Describe(List<EdgeServer> edges) => string.Join("; ", edges.Select(e =>
        $"{Client(e).Status.State} {Allowance(e)} booked {Account(e).Bucket.TotalBooked:F0} charged {Account(e).RuCharged:F0} admitted {Account(e).Admitted} balance {Account(e).Bucket.Balance:F1} settings {Account(e).Bucket.Settings}"));

    /// <summary>RU the edges' buckets booked: charges beyond a bucket's debt bound are forgiven by design (as in the simulation's budget invariant).</summary>
    private static double Booked(List<EdgeServer> edges) => edges.Sum(e => Account(e).Bucket.TotalBooked);

    private static TenantAccount Account(EdgeServer edge) => edge.Get<QosGate>().GetTenants().Single(t => t.Name == "app").Home;

    private static PolicyClient Client(EdgeServer edge) => edge.Get<PolicyClient>();

    private static TenantAllowance? Allowance(EdgeServer edge) =>
        Client(edge).TryGetAllowance("app", out var allowance) ? allowance : null;

    private static async Task WaitUntilAsync(Func<bool> condition, string what, SiloProcess silo)
    {
        var deadline = Stopwatch.StartNew();
        while (!condition())
        {
            if (deadline.Elapsed > TimeSpan.FromSeconds(30))
                Assert.Fail($"timed out waiting until {what}; silo output:\n{silo.Output}");
            await Task.Delay(100, Token);
        }
    }
}

