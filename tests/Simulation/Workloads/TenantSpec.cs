using MProxy.Abstractions;

namespace MProxy.Simulation.Workloads;

/// <summary>How a simulated client behaves after an error.</summary>
public enum RetryPolicy
{
    /// <summary>Waits the retry-after it was told (or a backoff), a few times.</summary>
    Polite,

    /// <summary>Retries at once, many times: a retry storm.</summary>
    Storm,
}

/// <summary>What one tenant's clients do: the mix of work, the pace, and how they react to errors.</summary>
public sealed record ClientProfile
{
    /// <summary>Mean think time between requests (exponential).</summary>
    public double ThinkMs { get; init; } = 100;

    public double PointReads { get; init; } = 4;
    public double RangeReads { get; init; } = 1;
    public double Writes { get; init; } = 2;
    public double Transactions { get; init; } = 2;
    public double ReadOnlyTransactions { get; init; } = 1;

    /// <summary>Transactions that sit idle between statements for seconds.</summary>
    public double LongTransactions { get; init; }

    public double Reports { get; init; }

    public double Runaways { get; init; }

    public double Prepared { get; init; } = 1;

    public double PrimaryHints { get; init; } = 0.2;

    /// <summary>Chance per session of a session-level SET (pins the session to the primary).</summary>
    public double PinChance { get; init; } = 0.05;

    public RetryPolicy Retry { get; init; } = RetryPolicy.Polite;

    /// <summary>Chance that the client disconnects while it waits for a reply (the reply is dropped).</summary>
    public double AbandonChance { get; init; }

    /// <summary>Chance that the client disconnects while idle inside a transaction.</summary>
    public double DisconnectInTransactionChance { get; init; }

    /// <summary>Chance after each request that the client reconnects (a new session, maybe on another edge).</summary>
    public double ReconnectChance { get; init; } = 0.01;
}

/// <summary>A tenant: its resource group (local QoS settings and the global budget), its clients and what they do.</summary>
/// <param name="Name">Tenant and user name (the tenant is the user).</param>
/// <param name="Priority">The group's priority.</param>
/// <param name="BudgetRuPerSecond">Global budget across all edges (the policy tier's).</param>
/// <param name="BurstRu">Global burst.</param>
/// <param name="DebtMaxRu">Per-edge debt bound of the local bucket.</param>
/// <param name="Weight">Fair-share weight inside its priority class.</param>
/// <param name="MaxConcurrent">Per-pool concurrency cap.</param>
/// <param name="Clients">Client connections.</param>
/// <param name="Profile">What the clients do.</param>
public sealed record TenantSpec(
    string Name,
    Priority Priority,
    double BudgetRuPerSecond,
    double BurstRu,
    double DebtMaxRu,
    double Weight,
    int MaxConcurrent,
    int Clients,
    ClientProfile Profile)
{
    /// <summary>The tenant's tables (each tenant works on its own).</summary>
    public string Table => "t_" + Name;

    /// <summary>Windows during which the tenant's clients stop thinking between requests: floods.</summary>
    public IReadOnlyList<(TimeSpan From, TimeSpan To)> Floods { get; init; } = [];
}
