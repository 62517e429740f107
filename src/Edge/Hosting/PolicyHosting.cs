using System.Security.Cryptography;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using MProxy.Abstractions.Policy;
using MProxy.Edge.Configuration;
using MProxy.Edge.Policy;
using MProxy.Edge.Pooling;
using MProxy.Edge.Protocols.MySql;
using MProxy.Edge.Protocols.Postgres;
using MProxy.Edge.Qos;
using MProxy.Grains.Configuration;
using MProxy.Grains.Exchange;

namespace MProxy.Edge.Hosting;

/// <summary>
/// Builds the policy tier the edge talks to — silos over HTTP/2, or the grains hosted in this
/// process (embedded mode, the default) — the policy client that exchanges with it once per tick,
/// and the QoS gate that spends what it grants.
/// </summary>
internal static class PolicyHosting
{
    public static void AddPolicyAndQos(IServiceCollection services, EdgeConfig config)
    {
        var settings = config.Policy;
        services.AddSingleton<IPolicyTier>(sp =>
        {
            if (!settings.Embedded)
                return new HttpPolicyTier(settings.Silos);
            var policy = settings.File is { } file ? PolicyConfigLoader.LoadFile(file) : FromQos(config.Qos);
            return new EmbeddedPolicyTier(policy, sp.GetRequiredService<TimeProvider>(), sp.GetRequiredService<ILoggerFactory>());
        });
        services.AddSingleton(sp => new PolicyClient(
            sp.GetRequiredService<IPolicyTier>(),
            new PolicyClientOptions
            {
                EdgeId = settings.EdgeId ?? $"{Environment.MachineName}-{Environment.ProcessId}-{RandomNumberGenerator.GetHexString(4, lowercase: true)}",
                CallTimeout = settings.CallTimeout,
                BackoffBase = settings.BackoffBase,
                BackoffMax = settings.BackoffMax,
                LocalShareFloorRuPerSecond = settings.LocalShareFloorRuPerSecond,
                MaxFingerprintsPerExchange = settings.MaxFingerprintsPerExchange,
            },
            sp.GetRequiredService<TimeProvider>(),
            sp.GetRequiredService<ILogger<PolicyClient>>()));
        services.AddHostedService(sp => sp.GetRequiredService<PolicyClient>());
        services.AddSingleton(sp =>
        {
            var client = sp.GetRequiredService<PolicyClient>();
            return new QosGate(config.Qos, sp.GetRequiredService<TimeProvider>(), new QosPolicySeams(client, client, client));
        });
        services.AddSingleton<IPeriodicTask, QosTick>();
        services.AddSingleton<IPeriodicTask>(sp => new CapacitySync(sp.GetRequiredService<PgPoolRegistry>(), sp.GetRequiredService<MySqlPoolRegistry>(), sp.GetRequiredService<PolicyClient>()));
    }

    /// <summary>
    /// The embedded tier's policy when no policy file is given: each configured tenant's budget is
    /// its home group's, and unknown tenants get the default group's.
    /// </summary>
    internal static PolicyConfig FromQos(QosConfig qos)
    {
        if (!qos.Enabled)
            return PolicyConfig.Empty with { Version = 1 };
        ResourceGroupConfig? Group(string name)
        {
            foreach (var g in qos.Groups)
                if (g.Name == name)
                    return g;
            return null;
        }
        var tenants = new List<TenantPolicy>();
        foreach (var tenant in qos.Tenants)
            if (Group(tenant.Group) is { RuPerSecond: > 0 } group)
                tenants.Add(new TenantPolicy(new TenantId(tenant.Name), group.RuPerSecond, group.Burst));
        var fallback = Group(qos.DefaultGroup);
        return PolicyConfig.Empty with
        {
            Version = 1,
            Tenants = tenants,
            DefaultTenant = fallback is { RuPerSecond: > 0 } ? new TenantPolicy(new TenantId("*"), fallback.RuPerSecond, fallback.Burst) : null,
        };
    }

    /// <summary>Reports pools' connection demand and applies the slots the policy tier grants, once per janitor tick.</summary>
    private sealed class CapacitySync(PgPoolRegistry postgres, MySqlPoolRegistry mysql, PolicyClient client) : IPeriodicTask
    {
        public string Name => "capacity sync";

        public void Tick() => PoolCapacity.Sync(postgres.SlotPools().Concat(mysql.SlotPools()), client, client);
    }

    /// <summary>Charges running statements, fires runaway rules and syncs leases, once per janitor tick.</summary>
    private sealed class QosTick(QosGate gate) : IPeriodicTask
    {
        public string Name => "qos tick";

        public void Tick() => gate.Tick();
    }
}
