using System.Globalization;
using MProxy.Abstractions;

namespace MProxy.Edge.Qos;

/// <summary>SQLSTATEs of QoS refusals (SQL-standard codes; both PostgreSQL and MySQL carry them).</summary>
internal static class QosSqlState
{
    /// <summary>Waited too long for a server slot.</summary>
    public const string QueueTimeout = "53300";

    /// <summary>RU budget exhausted, shed under load, or throttled.</summary>
    public const string ResourceLimit = "53400";

    /// <summary>Runaway query cancelled or rejected.</summary>
    public const string QueryCanceled = "57014";

    /// <summary>The scheduler is closing.</summary>
    public const string CannotConnectNow = "57P03";
}

/// <summary>Why QoS refused or stopped a query.</summary>
internal enum QosRejectReason
{
    None = 0,
    BudgetExhausted,
    Shed,
    QueueTimeout,
    RunawayRejected,
    RunawayCanceled,
    RunawayThrottled,
    Closed,

    /// <summary>The caller cancelled its wait (the synchronous core's outcome; the async API throws instead).</summary>
    Canceled,
}

/// <summary>What <see cref="QosRejection.Limit"/> counts.</summary>
internal enum QosLimitUnit
{
    Ru,
    Milliseconds,
    Queries,
    RuPerSecond,
}

/// <summary>
/// A refusal, carried by value so that refusing allocates nothing until the caller formats the
/// message it sends (<see cref="FormatMessage"/>: starts with <c>mproxy:</c>, names the limit and
/// the tenant, says when to retry). The protocol adapter turns it into its native error with
/// <see cref="SqlState"/>.
/// </summary>
internal readonly struct QosRejection
{
    public QosRejectReason Reason { get; init; }

    public string Tenant { get; init; }

    public string Group { get; init; }

    public Priority Priority { get; init; }

    /// <summary>When a retry is likely to get through.</summary>
    public TimeSpan RetryAfter { get; init; }

    /// <summary>Time the query waited (queue or budget) before being refused.</summary>
    public TimeSpan Waited { get; init; }

    /// <summary>Scheduler (pool) name for queue refusals.</summary>
    public string? Pool { get; init; }

    /// <summary>Runaway rule for runaway refusals.</summary>
    public RunawayRuleConfig? Rule { get; init; }

    public ulong Fingerprint { get; init; }

    /// <summary>What was measured against the limit (RU, debt, ms, …), depending on <see cref="Reason"/>.</summary>
    public double Observed { get; init; }

    /// <summary>The limit's value, depending on <see cref="Reason"/>.</summary>
    public double Limit { get; init; }

    /// <summary>Unit of <see cref="Limit"/> and <see cref="Observed"/> where a reason has several.</summary>
    public QosLimitUnit Unit { get; init; }

    /// <summary>Second limit for <see cref="QosRejectReason.BudgetExhausted"/>: the debt bound.</summary>
    public double ExtraLimit { get; init; }

    public bool IsRejected => Reason != QosRejectReason.None;

    public string SqlState => Reason switch
    {
        QosRejectReason.QueueTimeout => QosSqlState.QueueTimeout,
        QosRejectReason.RunawayRejected or QosRejectReason.RunawayCanceled or QosRejectReason.Canceled => QosSqlState.QueryCanceled,
        QosRejectReason.Closed => QosSqlState.CannotConnectNow,
        _ => QosSqlState.ResourceLimit,
    };

    public string FormatMessage()
    {
        var c = CultureInfo.InvariantCulture;
        var retry = FormatDuration(RetryAfter);
        var priority = Priorities.Label(Priority);
        return Reason switch
        {
            QosRejectReason.BudgetExhausted => string.Format(c,
                "mproxy: RU budget exhausted for tenant '{0}' (resource group '{1}': {2:0.##} RU/s, in debt {3:0.#} of at most {4:0.#} RU); retry after {5}",
                Tenant, Group, Limit, Observed, ExtraLimit, retry),
            QosRejectReason.Shed => string.Format(c,
                "mproxy: shed under load for tenant '{0}' at priority {1} (pool '{2}': queueing delay stayed above the {3} target; waited {4}); retry after {5}",
                Tenant, priority, Pool, FormatDuration(TimeSpan.FromMilliseconds(Limit)), FormatDuration(Waited), retry),
            QosRejectReason.QueueTimeout => string.Format(c,
                "mproxy: no server slot for tenant '{0}' at priority {1} within the {2} queue timeout (pool '{3}', {4:0} slots); retry after {5}",
                Tenant, priority, FormatDuration(Waited), Pool, Limit, retry),
            QosRejectReason.RunawayRejected => string.Format(c,
                "mproxy: query rejected for tenant '{0}': fingerprint 0x{1:x16} is quarantined by runaway rule '{2}'; retry after {3}",
                Tenant, Fingerprint, Rule?.Name, retry),
            QosRejectReason.RunawayCanceled => string.Format(c,
                "mproxy: query cancelled for tenant '{0}' by runaway rule '{1}' ({2}); fingerprint 0x{3:x16} is quarantined, retry after {4}",
                Tenant, Rule?.Name, DescribeRunawayLimit(), Fingerprint, retry),
            QosRejectReason.RunawayThrottled => string.Format(c,
                "mproxy: fingerprint 0x{0:x16} of tenant '{1}' is throttled by runaway rule '{2}' ({3}); retry after {4}",
                Fingerprint, Tenant, Rule?.Name, DescribeThrottle(), retry),
            QosRejectReason.Canceled => string.Format(c,
                "mproxy: wait for a server slot cancelled for tenant '{0}' (pool '{1}'); retry after {2}", Tenant, Pool, retry),
            QosRejectReason.Closed => string.Format(c,
                "mproxy: pool '{0}' is shutting down (tenant '{1}'); retry after {2}", Pool, Tenant, retry),
            _ => "mproxy: query admitted",
        };
    }

    /// <summary>For callers that prefer exceptions.</summary>
    public QosRejectedException ToException() => new(this);

    private string DescribeRunawayLimit() => Unit == QosLimitUnit.Milliseconds
        ? string.Format(CultureInfo.InvariantCulture, "ran {0:0} ms, over the {1:0} ms limit", Observed, Limit)
        : string.Format(CultureInfo.InvariantCulture, "cost {0:0.#} RU, over the {1:0.#} RU per execution limit", Observed, Limit);

    private string DescribeThrottle() => Unit == QosLimitUnit.Queries
        ? string.Format(CultureInfo.InvariantCulture, "at most {0:0} concurrent executions", Limit)
        : string.Format(CultureInfo.InvariantCulture, "at most {0:0.##} RU/s", Limit);

    internal static string FormatDuration(TimeSpan span)
    {
        var ms = Math.Ceiling(span.TotalMilliseconds);
        return ms < 1000
            ? string.Create(CultureInfo.InvariantCulture, $"{ms:0} ms")
            : string.Create(CultureInfo.InvariantCulture, $"{ms / 1000:0.#} s");
    }
}

/// <summary>A QoS refusal as an exception.</summary>
internal sealed class QosRejectedException(QosRejection rejection) : Exception(rejection.FormatMessage())
{
    public QosRejection Rejection { get; } = rejection;

    public string SqlState => Rejection.SqlState;
}
