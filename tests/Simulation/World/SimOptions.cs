using System.Globalization;
using System.Text;
using MProxy.Abstractions;
using MProxy.Abstractions.Policy;
using MProxy.Edge.Backends;
using MProxy.Edge.Pooling;
using MProxy.Edge.Qos;
using MProxy.Simulation.Backends;
using MProxy.Simulation.Core;
using MProxy.Simulation.Faults;
using MProxy.Simulation.Workloads;
using QosRunawayAction = MProxy.Edge.Qos.RunawayAction;

namespace MProxy.Simulation.World;

/// <summary>The kinds of scenario a seed can draw; seed mod <see cref="SimOptions.ScenarioCount"/> picks one, so any run of consecutive seeds covers them all.</summary>
public enum ScenarioKind
{
    /// <summary>No faults: budgets, priorities and fairness under a mixed load.</summary>
    Steady,

    /// <summary>The primary crashes, a replica is promoted, the old primary comes back as a replica.</summary>
    Failover,

    /// <summary>A replica is promoted while the old primary still runs (split brain), which is fenced later.</summary>
    SplitBrain,

    /// <summary>Hosts slow down, freeze, and replicas fall behind.</summary>
    SlowBackends,

    /// <summary>Edges lose the policy tier: partitions, silo crashes, a lossy network.</summary>
    PolicyPartition,

    /// <summary>A tenant floods and clients retry in storms.</summary>
    Flood,

    /// <summary>Edge processes crash and are replaced.</summary>
    EdgeCrash,

    /// <summary>Everything at once.</summary>
    Chaos,
}

/// <summary>
/// Everything one seed decides about a world, drawn from the seed alone (<see cref="Generate"/>) and
/// printed before the run: the topology, the configuration of every real component, the tenants and
/// their workloads, and the faults with their times.
/// </summary>
public sealed record SimOptions
{
    public const int ScenarioCount = 8;

    public required ulong Seed { get; init; }

    public required ScenarioKind Scenario { get; init; }

    public int Edges { get; init; } = 2;

    public int Silos { get; init; } = 2;

    public int Replicas { get; init; } = 2;

    /// <summary>How long clients issue requests; then they finish and the world drains.</summary>
    public TimeSpan Duration { get; init; } = TimeSpan.FromSeconds(40);

    /// <summary>The longest the drain may take (every request must be answered within it).</summary>
    public TimeSpan MaxDrain { get; init; } = TimeSpan.FromSeconds(400);

    /// <summary>No request may stay unanswered longer than this, at any time.</summary>
    public TimeSpan RequestDeadline { get; init; } = TimeSpan.FromSeconds(300);

    public TimeSpan JanitorInterval { get; init; } = TimeSpan.FromSeconds(1);

    public required QosConfig Qos { get; init; }

    public required BackendsConfig Backends { get; init; }

    public required PoolSettings Pool { get; init; }

    public required PolicyConfig Policy { get; init; }

    public TimeSpan PolicyCallTimeout { get; init; } = TimeSpan.FromSeconds(2);

    public TimeSpan PolicyBackoffBase { get; init; } = TimeSpan.FromMilliseconds(500);

    public TimeSpan PolicyBackoffMax { get; init; } = TimeSpan.FromSeconds(5);

    public FakeHostOptions Host { get; init; } = new();

    /// <summary>Edge↔silo one-way delay: median and log-normal shape.</summary>
    public double NetworkDelayMs { get; init; } = 1;

    public double NetworkLoss { get; init; }

    /// <summary>Each silo's clock is off by up to this much (positive or negative).</summary>
    public TimeSpan SiloClockSkew { get; init; }

    public required IReadOnlyList<TenantSpec> Tenants { get; init; }

    /// <summary>
    /// Check admitted RU while partitioned against the strict bound (budget plus one lease period),
    /// without the local shares cut-off edges are designed to spend (see <c>BudgetChecks</c>). Off by
    /// default: the design's fail-open degradation exceeds it on long partitions.
    /// </summary>
    public bool StrictPartitionBudget { get; init; }

    public required IReadOnlyList<FaultSpec> Faults { get; init; }

    /// <summary>The scenario of <paramref name="seed"/>: every choice is drawn from it.</summary>
    public static SimOptions Generate(ulong seed)
    {
        var kind = (ScenarioKind)(int)(seed % ScenarioCount);
        var r = new SimRandom(seed).Fork("options");
        var edges = kind is ScenarioKind.PolicyPartition or ScenarioKind.EdgeCrash ? r.Next(2, 4) : r.Next(1, 4);
        var silos = r.Next(1, 3);
        var replicas = kind is ScenarioKind.Failover or ScenarioKind.SplitBrain ? r.Next(1, 3) : r.Next(0, 3);
        var duration = TimeSpan.FromSeconds(r.Next(25, 46));
        var leasePeriod = TimeSpan.FromSeconds(r.Pick([3, 5, 10]));

        var tenants = GenerateTenants(r, kind, duration);
        var groups = new List<ResourceGroupConfig>();
        var tenantConfigs = new List<TenantConfig>();
        var tenantPolicies = new List<TenantPolicy>();
        foreach (var t in tenants)
        {
            // Before its first lease an edge spends on the group's local settings: its share of the global budget.
            groups.Add(new ResourceGroupConfig
            {
                Name = "g_" + t.Name,
                RuPerSecond = t.BudgetRuPerSecond / edges,
                Burst = t.BurstRu / edges,
                DebtMax = t.DebtMaxRu,
                Priority = t.Priority,
                Weight = t.Weight,
                MaxConcurrent = t.MaxConcurrent,
                StatementTimeout = t.Priority == Priority.Low ? TimeSpan.FromSeconds(r.Pick([5, 10, 20])) : r.Chance(0.5) ? TimeSpan.FromSeconds(5) : TimeSpan.Zero,
                QueueTimeout = r.Chance(0.3) ? TimeSpan.FromMilliseconds(r.Next(200, 3000)) : TimeSpan.Zero,
                MaxBudgetWait = TimeSpan.FromMilliseconds(r.Pick([0, 50, 100, 300])),
            });
            tenantConfigs.Add(new TenantConfig { Name = t.Name, Group = "g_" + t.Name });
            tenantPolicies.Add(new TenantPolicy(new TenantId(t.Name), t.BudgetRuPerSecond, t.BurstRu));
        }
        groups.Add(new ResourceGroupConfig { Name = "standard", RuPerSecond = 200, Burst = 200 });
        var rules = new List<RunawayRuleConfig>();
        if (r.Chance(0.6))
            rules.Add(new RunawayRuleConfig { Name = "long-runner", MaxElapsed = TimeSpan.FromSeconds(r.Pick([3, 6, 12])), Action = QosRunawayAction.Cancel, Watch = TimeSpan.FromSeconds(15), Shadow = r.Chance(0.2) });
        if (r.Chance(0.4))
            rules.Add(new RunawayRuleConfig { Name = "ru-hog", MaxRuPerExecution = r.Pick([500.0, 1500.0]), Action = r.Chance(0.5) ? QosRunawayAction.Throttle : QosRunawayAction.Deprioritize, ThrottleRuPerSecond = 200, Watch = TimeSpan.FromSeconds(20) });

        var qos = new QosConfig
        {
            Enabled = true,
            DefaultGroup = "standard",
            Groups = groups,
            Tenants = tenantConfigs,
            CoDel = new CoDelSettings
            {
                Enabled = r.Chance(0.7),
                Target = TimeSpan.FromMilliseconds(r.Pick([5, 20, 50])),
                Interval = TimeSpan.FromMilliseconds(r.Pick([100, 250, 500])),
            },
            Runaway = new RunawayConfig { Rules = rules },
        };

        var hosts = Enumerable.Range(0, replicas + 1).Select(i => new MProxy.Edge.Configuration.HostPort($"db{i}.sim", 5432)).ToList();
        var backends = new BackendsConfig
        {
            Mode = TopologyMode.Static,
            Hosts = hosts,
            Monitor = new MonitorCredentials("monitor", null, "postgres"),
            HealthCheckInterval = TimeSpan.FromMilliseconds(r.Pick([500, 1000])),
            HealthCheckTimeout = TimeSpan.FromMilliseconds(r.Pick([300, 1000])),
            Breaker = new BreakerSettings
            {
                FailuresToOpen = r.Next(2, 4),
                CooldownBase = TimeSpan.FromMilliseconds(r.Pick([500, 1000])),
                CooldownMax = TimeSpan.FromSeconds(r.Pick([5, 10])),
                Jitter = 0.2,
            },
            MaxReplicaLag = r.Chance(0.8) ? TimeSpan.FromMilliseconds(r.Pick([500, 1000, 2000])) : null,
            MaxReplicaLagBytes = r.Chance(0.3) ? 64 * 1024 : null,
            PrimaryServesReads = r.Chance(0.85),
            ReadYourWrites = r.Chance(0.85),
            StickinessWindow = r.Chance(0.2) ? TimeSpan.FromMilliseconds(200) : TimeSpan.Zero,
            FailoverWait = TimeSpan.FromSeconds(r.Pick([3, 5, 10])),
            LatencyDecay = TimeSpan.FromSeconds(10),
        };

        var pool = new PoolSettings(
            Size: r.Next(2, 11),
            MinSize: r.Next(0, 3),
            WaitTimeout: TimeSpan.FromSeconds(r.Pick([1, 2, 5])),
            ConnectTimeout: TimeSpan.FromSeconds(r.Pick([1, 2])),
            IdleTimeout: TimeSpan.FromSeconds(r.Pick([5, 20, 600])),
            Lifetime: TimeSpan.FromSeconds(r.Pick([15, 60, 3600])),
            CheckAfterIdle: TimeSpan.FromSeconds(r.Pick([2, 10, 30])));

        var policy = PolicyConfig.Empty with
        {
            Version = 1,
            LeasePeriod = leasePeriod,
            ExchangeInterval = TimeSpan.FromSeconds(1),
            EdgeLiveness = TimeSpan.FromSeconds(5),
            Tenants = tenantPolicies,
            Backends = [.. hosts.Select((h, i) => new BackendPolicy(new BackendId("db" + i), pool.Size * edges - r.Next(0, Math.Max(1, pool.Size))))],
            Runaway = new RunawayPolicy
            {
                MinExecutions = 3,
                VerdictTtl = TimeSpan.FromSeconds(20),
                Reject = new RunawayThreshold(RuPerExecution: 1500, LatencyMs: null),
                Deprioritize = new RunawayThreshold(RuPerExecution: null, LatencyMs: 500),
            },
        };

        var host = new FakeHostOptions
        {
            RoundTripMs = r.Pick([0.3, 1.0]),
            LatencySigma = r.Pick([0.3, 0.6]),
            Cores = r.Next(4, 17),
            MaxConnections = r.Chance(0.2) ? (pool.Size * edges) - 1 : 200,
            ReplicationLagMs = r.Pick([5.0, 30.0, 200.0]),
        };

        return new SimOptions
        {
            Seed = seed,
            Scenario = kind,
            Edges = edges,
            Silos = silos,
            Replicas = replicas,
            Duration = duration,
            Qos = qos,
            Backends = backends,
            Pool = pool,
            Policy = policy,
            Host = host,
            NetworkDelayMs = r.Pick([0.5, 2.0, 10.0]),
            NetworkLoss = kind is ScenarioKind.PolicyPartition or ScenarioKind.Chaos ? r.Pick([0.0, 0.01, 0.05]) : 0,
            SiloClockSkew = r.Chance(0.3) ? TimeSpan.FromMilliseconds(r.Next(1, 300)) : TimeSpan.Zero,
            PolicyBackoffMax = TimeSpan.FromSeconds(r.Pick([2, 5])),
            Tenants = tenants,
            Faults = GenerateFaults(r, kind, edges, silos, replicas, duration),
        };
    }

    private static List<TenantSpec> GenerateTenants(SimRandom r, ScenarioKind kind, TimeSpan duration)
    {
        var list = new List<TenantSpec>
        {
            new("shop", Priority.High, r.Pick([400.0, 1000.0, 3000.0]), 1000, 300, Weight: 2, MaxConcurrent: r.Next(2, 20), Clients: r.Next(3, 10),
                new ClientProfile { ThinkMs = r.Pick([20.0, 80.0]), Transactions = 3, Prepared = 2, LongTransactions = r.Chance(0.3) ? 0.1 : 0, AbandonChance = 0.002, DisconnectInTransactionChance = 0.01 }),
            new("web", Priority.Medium, r.Pick([200.0, 600.0]), 400, 200, Weight: 1, MaxConcurrent: r.Next(2, 20), Clients: r.Next(2, 8),
                new ClientProfile { ThinkMs = r.Pick([50.0, 150.0]), ReadOnlyTransactions = 2, PinChance = 0.1, AbandonChance = 0.005 }),
            new("reports", Priority.Low, r.Pick([300.0, 1500.0]), 1500, 1000, Weight: 1, MaxConcurrent: r.Next(1, 4), Clients: r.Next(1, 4),
                new ClientProfile { ThinkMs = 500, PointReads = 1, Writes = 0.5, Reports = 3, Runaways = r.Chance(0.5) ? 0.5 : 0, LongTransactions = 0.5, Prepared = 0 }),
        };
        if (kind is ScenarioKind.Flood or ScenarioKind.Chaos || r.Chance(0.3))
        {
            var storm = kind == ScenarioKind.Flood || r.Chance(0.5);
            var from = TimeSpan.FromSeconds(r.Uniform(3, duration.TotalSeconds / 2));
            list.Add(new TenantSpec("noisy", r.Chance(0.5) ? Priority.Medium : Priority.Low, r.Pick([100.0, 300.0]), 200, 100, Weight: 1, MaxConcurrent: r.Next(2, 30), Clients: r.Next(5, 25),
                new ClientProfile { ThinkMs = 200, Retry = storm ? RetryPolicy.Storm : RetryPolicy.Polite, Transactions = 1, AbandonChance = 0.01, ReconnectChance = 0.05 })
            {
                Floods = [(from, from + TimeSpan.FromSeconds(r.Uniform(3, 15)))],
            });
        }
        return list;
    }

    private static List<FaultSpec> GenerateFaults(SimRandom r, ScenarioKind kind, int edges, int silos, int replicas, TimeSpan duration)
    {
        var faults = new List<FaultSpec>();
        TimeSpan At() => TimeSpan.FromSeconds(r.Uniform(3, duration.TotalSeconds * 0.8));
        TimeSpan For(double min, double max) => TimeSpan.FromSeconds(r.Uniform(min, max));
        void Failover() => faults.Add(new FaultSpec(FaultKind.CrashPrimary, At(), For(2, 15))
        {
            PromoteAfter = replicas > 0 && r.Chance(0.8) ? For(0.5, 4) : null,
        });
        void Replica()
        {
            if (replicas == 0)
                return;
            var host = r.Next(1, replicas + 1);
            switch (r.Next(3))
            {
                case 0:
                    faults.Add(new FaultSpec(FaultKind.CrashReplica, At(), For(1, 10)) { Target = host });
                    break;
                case 1:
                    faults.Add(new FaultSpec(FaultKind.PauseReplay, At(), For(1, 8)) { Target = host });
                    break;
                default:
                    faults.Add(new FaultSpec(FaultKind.Slowdown, At(), For(2, 10)) { Target = host, Factor = r.Pick([3.0, 10.0]) });
                    break;
            }
        }
        void Slow() => faults.Add(new FaultSpec(r.Chance(0.3) ? FaultKind.Freeze : FaultKind.Slowdown, At(), For(1, 6))
        {
            Target = r.Next(0, replicas + 1),
            Factor = r.Pick([2.0, 5.0, 20.0]),
        });
        void Partition()
        {
            var cut = Enumerable.Range(0, edges).Where(_ => r.Chance(0.6)).ToList();
            if (cut.Count == 0)
                cut.Add(r.Next(edges));
            var from = Enumerable.Range(0, silos).Where(_ => r.Chance(0.7)).ToList();
            if (from.Count == 0)
                from = [.. Enumerable.Range(0, silos)];
            faults.Add(new FaultSpec(FaultKind.Partition, At(), For(2, 25)) { Edges = cut, Silos = from });
        }
        void Silo() => faults.Add(new FaultSpec(FaultKind.CrashSilo, At(), For(1, 15)) { Target = r.Next(silos) });
        void Lossy() => faults.Add(new FaultSpec(FaultKind.LossyNetwork, At(), For(3, 15)) { Factor = r.Pick([0.1, 0.3, 0.7]) });
        void Edge() => faults.Add(new FaultSpec(FaultKind.CrashEdge, At(), For(1, 8)) { Target = r.Next(edges) });

        switch (kind)
        {
            case ScenarioKind.Steady:
                break;
            case ScenarioKind.Failover:
                Failover();
                if (r.Chance(0.3))
                    Replica();
                break;
            case ScenarioKind.SplitBrain:
                faults.Add(new FaultSpec(FaultKind.PromoteWhilePrimaryUp, At(), For(1, 6)));
                break;
            case ScenarioKind.SlowBackends:
                for (var i = r.Next(1, 4); i > 0; i--)
                    Slow();
                Replica();
                break;
            case ScenarioKind.PolicyPartition:
                Partition();
                if (r.Chance(0.5))
                    Silo();
                if (r.Chance(0.5))
                    Lossy();
                break;
            case ScenarioKind.Flood:
                if (r.Chance(0.3))
                    Slow();
                break;
            case ScenarioKind.EdgeCrash:
                Edge();
                if (r.Chance(0.4))
                    Edge();
                break;
            default:
                for (var i = r.Next(2, 6); i > 0; i--)
                {
                    switch (r.Next(7))
                    {
                        case 0: Failover(); break;
                        case 1: Replica(); break;
                        case 2: Slow(); break;
                        case 3: Partition(); break;
                        case 4: Silo(); break;
                        case 5: Lossy(); break;
                        default: Edge(); break;
                    }
                }
                break;
        }
        faults.Sort((a, b) => a.At.CompareTo(b.At));
        return faults;
    }

    /// <summary>The options as printed before a run.</summary>
    public string Describe()
    {
        var c = CultureInfo.InvariantCulture;
        var b = new StringBuilder();
        b.AppendLine(c, $"seed {Seed}: scenario {Scenario}; {Edges} edges, {Silos} silos, primary + {Replicas} replicas; clients for {Duration.TotalSeconds:0}s");
        b.AppendLine(c, $"  pool: size {Pool.Size} (min {Pool.MinSize}), wait {Pool.WaitTimeout.TotalMilliseconds:0}ms, connect {Pool.ConnectTimeout.TotalMilliseconds:0}ms, idle {Pool.IdleTimeout.TotalSeconds:0}s, lifetime {Pool.Lifetime.TotalSeconds:0}s, check after {Pool.CheckAfterIdle.TotalSeconds:0}s");
        b.AppendLine(c, $"  codel: {(Qos.CoDel.Enabled ? $"target {Qos.CoDel.Target.TotalMilliseconds:0}ms interval {Qos.CoDel.Interval.TotalMilliseconds:0}ms" : "off")}; runaway rules: {string.Join(", ", Qos.Runaway.Rules.Select(x => $"{x.Name}({x.Action}{(x.Shadow ? ",shadow" : "")})"))}");
        b.AppendLine(c, $"  backends: probe every {Backends.HealthCheckInterval.TotalMilliseconds:0}ms (timeout {Backends.HealthCheckTimeout.TotalMilliseconds:0}ms), breaker {Backends.Breaker.FailuresToOpen} failures / {Backends.Breaker.CooldownBase.TotalMilliseconds:0}..{Backends.Breaker.CooldownMax.TotalSeconds:0}s, lag ≤ {Backends.MaxReplicaLag?.TotalMilliseconds.ToString(c) ?? "-"}ms / {Backends.MaxReplicaLagBytes?.ToString(c) ?? "-"}B, primary serves reads {Backends.PrimaryServesReads}, read-your-writes {Backends.ReadYourWrites}, failover wait {Backends.FailoverWait.TotalSeconds:0}s");
        b.AppendLine(c, $"  hosts: round trip {Host.RoundTripMs}ms, σ {Host.LatencySigma}, {Host.Cores} cores, max_connections {Host.MaxConnections}, replication lag {Host.ReplicationLagMs}ms");
        b.AppendLine(c, $"  policy tier: lease {Policy.LeasePeriod.TotalSeconds:0}s, exchange {Policy.ExchangeInterval.TotalSeconds:0}s, liveness {Policy.EdgeLiveness.TotalSeconds:0}s; network {NetworkDelayMs}ms loss {NetworkLoss}; silo clock skew ±{SiloClockSkew.TotalMilliseconds:0}ms; call timeout {PolicyCallTimeout.TotalSeconds:0}s, backoff ≤ {PolicyBackoffMax.TotalSeconds:0}s");
        foreach (var t in Tenants)
        {
            var g = Qos.FindGroup("g_" + t.Name)!;
            var floods = t.Floods.Count > 0 ? ", flood " + string.Join(", ", t.Floods.Select(f => string.Create(c, $"{f.From.TotalSeconds:0.#}-{f.To.TotalSeconds:0.#}s"))) : "";
            b.AppendLine(c, $"  tenant {t.Name}: {t.Priority}, budget {t.BudgetRuPerSecond} RU/s burst {t.BurstRu} debt {t.DebtMaxRu}, weight {t.Weight}, cap {t.MaxConcurrent}, {t.Clients} clients (think {t.Profile.ThinkMs}ms, retry {t.Profile.Retry}), timeout {g.StatementTimeout.TotalSeconds:0}s, queue {g.QueueTimeout.TotalMilliseconds:0}ms, budget wait {g.MaxBudgetWait.TotalMilliseconds:0}ms{floods}");
        }
        foreach (var f in Faults)
            b.AppendLine(c, $"  fault: {f}");
        return b.ToString();
    }
}
