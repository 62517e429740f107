// Lease traffic and budget error of the policy tier (issue 6's benchmark).
//
// Starts a silo as its own process (mproxy-silo.dll next to this program, in-memory or PostgreSQL
// store) and E edges' policy clients (the real PolicyClient over HTTP/2, one per edge, each with the
// real RuBucket per tenant that the edge's QoS gate uses), drives T tenants with a demand that
// changes every few seconds and is split unevenly over the edges, and reports:
//   - exchanges per second per edge and the silo's CPU (from /proc/<pid>/stat);
//   - per tenant-second, the RU admitted over all edges against what one ideal shared bucket
//     (same budget and burst, seeing all demand at once) would have admitted: median and p95 of
//     |error| as a fraction of the budget, and the worst second over budget.
//
// Usage: dotnet MProxy.Benchmarks.dll [--seconds 60] [--edges 3] [--tenants 100] [--budget 100] [--shift 5] [--store memory|postgres://…] [--seed 1]
using System.Diagnostics;
using System.Globalization;
using Microsoft.Extensions.Logging.Abstractions;
using MProxy.Abstractions.Policy;
using MProxy.Edge.Policy;
using MProxy.Edge.Qos;

var options = Options.Parse(args);
var policyFile = Path.Combine(Path.GetTempPath(), $"mproxy-lease-bench-{Environment.ProcessId}.yaml");
File.WriteAllText(policyFile, $"""
    leasePeriodMs: 10000
    exchangeIntervalMs: 1000
    defaultTenant: {"{"} ruPerSecond: {options.Budget}, burstRu: {options.Budget} {"}"}
    """);
var edgePort = FreePort();
var silo = StartSilo(edgePort, FreePort(), options.Store, policyFile);
try
{
    await WaitForSiloAsync(edgePort);
    var result = await RunAsync(options, new Uri($"http://127.0.0.1:{edgePort}/"), silo);
    result.Print(options);
}
finally
{
    silo.Kill(entireProcessTree: true);
    await silo.WaitForExitAsync();
    File.Delete(policyFile);
}

static async Task<Result> RunAsync(Options options, Uri siloUri, Process silo)
{
    var tenants = Enumerable.Range(0, options.Tenants).Select(i => $"tenant-{i:D3}").ToArray();
    var edges = new List<Edge>();
    for (var e = 0; e < options.Edges; e++)
    {
        var tier = new CountingTier(new HttpPolicyTier(siloUri));
        var client = new PolicyClient(tier, new PolicyClientOptions { EdgeId = $"bench-edge-{e + 1}", JitterSeed = e + 1 }, TimeProvider.System, NullLogger<PolicyClient>.Instance);
        var buckets = tenants.Select(_ => new RuBucket(new RuBucketSettings(options.Budget / options.Edges, options.Budget / options.Edges, options.Budget), TimeProvider.System)).ToArray();
        edges.Add(new Edge(tier, client, buckets, new long[tenants.Length]));
        await client.StartAsync(CancellationToken.None);
    }
    var ideal = tenants.Select(_ => new RuBucket(new RuBucketSettings(options.Budget, options.Budget, options.Budget), TimeProvider.System)).ToArray();

    var random = new Random(options.Seed);
    var demand = new double[tenants.Length];          // RU/s over all edges
    var split = new double[tenants.Length, options.Edges];
    var errors = new List<double>();
    var worstOver = 0.0;
    double totalAdmitted = 0, totalIdeal = 0;
    var step = TimeSpan.FromMilliseconds(50);
    var warmup = TimeSpan.FromSeconds(5);
    var clock = Stopwatch.StartNew();
    var secondAdmitted = new double[tenants.Length];
    var secondIdeal = new double[tenants.Length];
    var nextSecond = warmup;
    var cpuStart = 0.0;
    var callsStart = new long[options.Edges];
    var next = TimeSpan.Zero;
    var nextShuffle = TimeSpan.Zero;
    while (clock.Elapsed < warmup + TimeSpan.FromSeconds(options.Seconds))
    {
        if (clock.Elapsed >= nextShuffle)
        {
            Reshuffle(random, demand, split, options);
            nextShuffle += TimeSpan.FromSeconds(options.ShiftSeconds);
        }
        // Sync each edge's buckets with its leases, as the edge's QoS tick does.
        foreach (var edge in edges)
            for (var t = 0; t < tenants.Length; t++)
                if (edge.Client.TryGetAllowance(tenants[t], out var allowance) && allowance.Version != edge.Versions[t])
                {
                    edge.Versions[t] = allowance.Version;
                    edge.Buckets[t].Reconfigure(new RuBucketSettings(allowance.RuPerSecond, allowance.BurstRu, options.Budget));
                }
        var measuring = clock.Elapsed >= warmup;
        for (var t = 0; t < tenants.Length; t++)
        {
            var want = demand[t] * step.TotalSeconds;
            secondIdeal[t] += Admit(ideal[t], want);
            for (var e = 0; e < edges.Count; e++)
            {
                var wantHere = want * split[t, e];
                var admitted = Admit(edges[e].Buckets[t], wantHere);
                secondAdmitted[t] += admitted;
                edges[e].Client.RecordAdmitted(tenants[t], admitted);
                if (wantHere - admitted > 1e-9)
                    edges[e].Client.RecordRefused(tenants[t], wantHere - admitted, shed: false);
            }
        }
        if (clock.Elapsed >= nextSecond)
        {
            if (measuring && nextSecond > warmup)
            {
                for (var t = 0; t < tenants.Length; t++)
                {
                    errors.Add(Math.Abs(secondAdmitted[t] - secondIdeal[t]) / options.Budget);
                    worstOver = Math.Max(worstOver, (secondAdmitted[t] - options.Budget) / options.Budget);
                    totalAdmitted += secondAdmitted[t];
                    totalIdeal += secondIdeal[t];
                }
            }
            else
            {
                cpuStart = SiloCpuSeconds(silo);
                for (var e = 0; e < edges.Count; e++)
                    callsStart[e] = edges[e].Tier.Calls;
            }
            Array.Clear(secondAdmitted);
            Array.Clear(secondIdeal);
            nextSecond += TimeSpan.FromSeconds(1);
        }
        next += step;
        var wait = next - clock.Elapsed;
        if (wait > TimeSpan.Zero)
            await Task.Delay(wait);
    }
    var seconds = (clock.Elapsed - warmup).TotalSeconds;
    var cpu = SiloCpuSeconds(silo) - cpuStart;
    var calls = edges.Select((e, i) => (e.Tier.Calls - callsStart[i]) / seconds).ToArray();
    var failures = edges.Sum(e => e.Tier.Failures);
    var latency = edges.Average(e => e.Tier.MeanMilliseconds);
    foreach (var edge in edges)
    {
        await edge.Client.StopAsync(CancellationToken.None);
        edge.Client.Dispose();
    }
    errors.Sort();
    return new Result(calls, cpu / seconds, errors[errors.Count / 2], errors[(int)(errors.Count * 0.95)], worstOver, totalAdmitted / totalIdeal, failures, latency, errors.Count);
}

// Every --shift seconds (default 5) each tenant gets a new total demand (a third of them over budget, the rest under) and a
// new uneven split over the edges.
static void Reshuffle(Random random, double[] demand, double[,] split, Options options)
{
    for (var t = 0; t < demand.Length; t++)
    {
        demand[t] = options.Budget * (random.Next(3) == 0 ? 1.5 + random.NextDouble() : 0.2 + 0.6 * random.NextDouble());
        var weights = new double[options.Edges];
        for (var e = 0; e < options.Edges; e++)
            weights[e] = random.NextDouble() < 0.2 ? 0 : random.NextDouble();
        var sum = weights.Sum();
        for (var e = 0; e < options.Edges; e++)
            split[t, e] = sum == 0 ? 1.0 / options.Edges : weights[e] / sum;
    }
}

// One statement of `want` RU per step: admitted (and charged) when the bucket is not in debt, as
// the edge admits statements.
static double Admit(RuBucket bucket, double want) => want > 0 && bucket.TryAdmit(want, out _) ? want : 0;

static Process StartSilo(int edgePort, int dashboardPort, string store, string policyFile)
{
    var info = new ProcessStartInfo("dotnet") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
    foreach (var a in new[] { Path.Combine(AppContext.BaseDirectory, "mproxy-silo.dll"), "--listen", $"127.0.0.1:{edgePort}", "--dashboard-listen", $"127.0.0.1:{dashboardPort}", "--store", store, "--policy", policyFile, "--log-level", "Warning" })
        info.ArgumentList.Add(a);
    var process = Process.Start(info)!;
    process.OutputDataReceived += (_, e) => { if (e.Data is not null) Console.Error.WriteLine($"silo: {e.Data}"); };
    process.ErrorDataReceived += (_, e) => { if (e.Data is not null) Console.Error.WriteLine($"silo: {e.Data}"); };
    process.BeginOutputReadLine();
    process.BeginErrorReadLine();
    return process;
}

static async Task WaitForSiloAsync(int edgePort)
{
    for (var i = 0; i < 300; i++)
    {
        try
        {
            using var socket = new System.Net.Sockets.TcpClient();
            await socket.ConnectAsync("127.0.0.1", edgePort);
            return;
        }
        catch (System.Net.Sockets.SocketException)
        {
            await Task.Delay(100);
        }
    }
    throw new TimeoutException("the silo did not start listening");
}

static double SiloCpuSeconds(Process silo)
{
    // utime and stime (fields 14 and 15 of /proc/<pid>/stat) in clock ticks of 1/100 s.
    var stat = File.ReadAllText($"/proc/{silo.Id}/stat");
    var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
    return (long.Parse(fields[11], CultureInfo.InvariantCulture) + long.Parse(fields[12], CultureInfo.InvariantCulture)) / 100.0;
}

static int FreePort()
{
    using var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
    listener.Start();
    return ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
}

internal sealed record Edge(CountingTier Tier, PolicyClient Client, RuBucket[] Buckets, long[] Versions);

internal sealed record Result(double[] CallsPerSecond, double SiloCpuCores, double MedianError, double P95Error, double WorstOver, double AdmittedOverIdeal, long Failures, double ExchangeMs, int TenantSeconds)
{
    public void Print(Options o)
    {
        Console.WriteLine($"| edges × tenants | exchanges/s per edge | mean exchange ms | silo CPU (cores) | budget error per tenant-second: median | p95 | worst second over budget | admitted ÷ ideal | failed exchanges |");
        Console.WriteLine("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"| {o.Edges} × {o.Tenants} ({o.Store.Split(':')[0]} store, {o.Seconds} s, demand shifts every {o.ShiftSeconds} s, {TenantSeconds} tenant-seconds) | {string.Join(" / ", CallsPerSecond.Select(c => c.ToString("F2", CultureInfo.InvariantCulture)))} | {ExchangeMs:F1} | {SiloCpuCores:F3} | {MedianError:P1} | {P95Error:P1} | {WorstOver:+0.0%;-0.0%} | {AdmittedOverIdeal:F3} | {Failures} |"));
    }
}

internal sealed class CountingTier(IPolicyTier inner) : IPolicyTier
{
    private long _calls;
    private long _failures;
    private long _ticks;

    public double MeanMilliseconds => Calls == 0 ? 0 : TimeSpan.FromTicks(Interlocked.Read(ref _ticks) / Calls).TotalMilliseconds;

    public long Calls => Interlocked.Read(ref _calls);

    public long Failures => Interlocked.Read(ref _failures);

    public async Task<PolicyExchangeResponse> ExchangeAsync(PolicyExchangeRequest request, CancellationToken cancellationToken)
    {
        Interlocked.Increment(ref _calls);
        var started = Stopwatch.GetTimestamp();
        try
        {
            return await inner.ExchangeAsync(request, cancellationToken);
        }
        catch
        {
            Interlocked.Increment(ref _failures);
            throw;
        }
        finally
        {
            Interlocked.Add(ref _ticks, Stopwatch.GetElapsedTime(started).Ticks);
        }
    }
}

internal sealed record Options(int Seconds, int Edges, int Tenants, double Budget, string Store, int Seed, int ShiftSeconds)
{
    public static Options Parse(string[] args)
    {
        var o = new Options(60, 3, 100, 100, "memory", 1, 5);
        for (var i = 0; i + 1 < args.Length; i += 2)
        {
            o = args[i] switch
            {
                "--seconds" => o with { Seconds = int.Parse(args[i + 1], CultureInfo.InvariantCulture) },
                "--edges" => o with { Edges = int.Parse(args[i + 1], CultureInfo.InvariantCulture) },
                "--tenants" => o with { Tenants = int.Parse(args[i + 1], CultureInfo.InvariantCulture) },
                "--budget" => o with { Budget = double.Parse(args[i + 1], CultureInfo.InvariantCulture) },
                "--store" => o with { Store = args[i + 1] },
                "--shift" => o with { ShiftSeconds = int.Parse(args[i + 1], CultureInfo.InvariantCulture) },
                "--seed" => o with { Seed = int.Parse(args[i + 1], CultureInfo.InvariantCulture) },
                _ => throw new ArgumentException($"unknown option {args[i]}"),
            };
        }
        return o;
    }
}
