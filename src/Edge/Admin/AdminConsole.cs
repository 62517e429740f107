using System.Globalization;
using Microsoft.Extensions.Logging;
using MProxy.Edge.Configuration;
using MProxy.Edge.Hosting;
using MProxy.Edge.Policy;
using MProxy.Edge.Qos;
using MProxy.Edge.Sessions;
using MProxy.Edge.Telemetry;

namespace MProxy.Edge.Admin;

/// <summary>
/// The admin console behind the virtual database <c>mproxy</c>, familiar to PgBouncer users:
/// <c>SHOW POOLS | CLIENTS | SERVERS | TENANTS | FINGERPRINTS | BACKENDS | CONFIG | STATS | POLICY |
/// HELP | VERSION</c> and <c>RELOAD</c>. Protocol-neutral: a command's text in, a result set (text
/// columns) or an error out; the protocol adapter encodes them.
/// </summary>
internal sealed class AdminConsole(
    ConfigStore config,
    ClientRegistry clients,
    IEdgeInventory inventory,
    TimeProvider time,
    ILogger<AdminConsole> log,
    QosGate? qos = null,
    PolicyClient? policy = null,
    EdgeTelemetry? telemetry = null,
    ConfigReloader? reloader = null)
{
    /// <summary>The database name that reaches the console.</summary>
    public const string DatabaseName = "mproxy";

    private sealed record Command(string Name, string Description, string[] Columns, Func<AdminConsole, AdminResultSet> Run);

    private static readonly string[] PoolColumns =
        ["database", "user", "host", "pool_mode", "pool_size", "sv_active", "sv_idle", "sv_opening", "cl_waiting", "maxwait_ms", "sched_busy", "sched_waiting", "sched_shed", "protocol"];

    private static readonly string[] ClientColumns = ["id", "user", "database", "tenant", "application_name", "state", "addr", "connected_s", "server_id", "protocol", "tls"];

    private static readonly string[] ServerColumns = ["id", "database", "user", "host", "state", "client_id", "age_s", "transaction", "prepared", "protocol"];

    private static readonly string[] TenantColumns =
        ["tenant", "group", "priority", "configured", "ru_per_second", "burst", "debt_max", "budget_ru_per_second", "balance", "ru_charged", "admitted",
         "budget_waits", "budget_refused", "shed", "queue_timeouts", "runaway_refused", "runaway_cancelled", "allowance"];

    private static readonly string[] FingerprintColumns = ["tenant", "fingerprint", "calls", "total_ru", "avg_ru", "max_ru", "avg_ms", "max_ms", "error_ru", "own_series"];

    private static readonly string[] BackendColumns =
        ["database", "index", "host", "role", "breaker", "reachable", "serves_reads", "eligibility", "lag_bytes", "lag_ms", "failures", "last_error"];

    private static readonly string[] StatsColumns = ["database", "tenant", "read", "write", "unknown", "to_primary", "to_replica", "bytes_to_client", "bytes_to_server"];

    private static readonly string[] ReloadColumns = ["result", "generation", "message"];

    private static readonly Command[] Commands =
    [
        new("SHOW HELP", "this list", ["command", "description"], c => c.Help()),
        new("SHOW POOLS", "server connection pools: size, active, idle, opening, waiting clients, scheduler", PoolColumns, c => c.Pools()),
        new("SHOW CLIENTS", "client connections", ClientColumns, c => c.Clients()),
        new("SHOW SERVERS", "server connections", ServerColumns, c => c.Servers()),
        new("SHOW TENANTS", "QoS tenants per resource group: budget, balance, RU, admitted, refused", TenantColumns, c => c.Tenants()),
        new("SHOW FINGERPRINTS", "the heaviest query fingerprints by RU, and the rest aggregated", FingerprintColumns, c => c.Fingerprints()),
        new("SHOW BACKENDS", "hosts of monitored databases: role, breaker, lag", BackendColumns, c => c.Backends()),
        new("SHOW CONFIG", "the configuration in force (secrets hidden)", ["key", "value"], c => c.Config()),
        new("SHOW STATS", "queries and bytes per database and tenant", StatsColumns, c => c.Stats()),
        new("SHOW POLICY", "the policy tier connection", ["key", "value"], c => c.PolicyStatus()),
        new("SHOW VERSION", "mproxy's version", ["version"], c => c.Version()),
        new("RELOAD", "reload the configuration file (the old one stays in force when the new one is invalid)", ReloadColumns, c => c.Reload()),
    ];

    /// <summary>The columns a command answers with, without running it (Describe of a prepared statement); null for an unknown command.</summary>
    public static IReadOnlyList<string>? DescribeColumns(string text) => Find(Normalize(text)) is { } command ? command.Columns : null;

    /// <summary>Runs one command (a trailing ';' is allowed; case and extra spaces do not matter).</summary>
    public AdminReply Execute(string text, AdminCaller caller)
    {
        var normalized = Normalize(text);
        if (normalized.Length == 0)
            return AdminReply.Fail(AdminSqlState.SyntaxError, "mproxy: empty admin command", "SHOW HELP lists the commands");
        var command = Find(normalized);
        if (command is null)
        {
            return AdminReply.Fail(AdminSqlState.SyntaxError, $"mproxy: unknown admin command \"{Shorten(normalized)}\"",
                "the console answers " + string.Join(", ", Commands.Select(c => c.Name)));
        }
        AdminLog.Command(log, caller.ClientId, caller.User, command.Name);
        if (command.Name == "RELOAD")
            return RunReload();
        try
        {
            return AdminReply.Of(command.Run(this));
        }
        catch (Exception e) when (e is InvalidOperationException or ObjectDisposedException or KeyNotFoundException)
        {
            AdminLog.CommandFailed(log, command.Name, e);
            return AdminReply.Fail("XX000", $"mproxy: {command.Name} failed: {e.Message}");
        }
    }

    /// <summary>Upper case, single spaces, no trailing ';'.</summary>
    public static string Normalize(string text)
    {
        var words = text.Trim().TrimEnd(';').Split((char[])[' ', '\t', '\r', '\n'], StringSplitOptions.RemoveEmptyEntries);
        return string.Join(' ', words).ToUpperInvariant();
    }

    private static Command? Find(string normalized)
    {
        foreach (var command in Commands)
            if (command.Name == normalized)
                return command;
        return null;
    }

    private static string Shorten(string text) => text.Length <= 60 ? text : text[..60] + "…";

    private static string N(long value) => value.ToString(CultureInfo.InvariantCulture);

    private static string D(double value) => double.IsFinite(value) ? value.ToString("0.###", CultureInfo.InvariantCulture) : double.IsPositiveInfinity(value) ? "unlimited" : "NaN";

    private static string B(bool value) => value ? "yes" : "no";

    private static AdminResultSet Rows(string[] columns, List<string?[]> rows) => new(columns, rows, "SHOW");

    private AdminResultSet Help() =>
        Rows(["command", "description"], [.. Commands.Select(c => new string?[] { c.Name, c.Description })]);

    private AdminResultSet Version() =>
        Rows(["version"], [[typeof(AdminConsole).Assembly.GetName().Version?.ToString() ?? "0"]]);

    private AdminResultSet Pools()
    {
        var rows = new List<string?[]>();
        foreach (var pool in inventory.GetPools().OrderBy(p => p.Database, StringComparer.Ordinal).ThenBy(p => p.User, StringComparer.Ordinal).ThenBy(p => p.Host, StringComparer.Ordinal))
        {
            var s = pool.Stats;
            var sched = pool.Scheduler?.GetStats();
            rows.Add([
                pool.Database, pool.User, pool.Host, pool.Mode, N(s.Size), N(s.Active), N(s.Idle), N(s.Opening), N(s.Waiting),
                N((long)s.LongestWait.TotalMilliseconds),
                sched is { } a ? N(a.Busy) : null,
                sched is { } b ? N(b.WaitingHigh + b.WaitingMedium + b.WaitingLow) : null,
                sched is { } c ? N(c.Shed) : null,
                pool.Protocol,
            ]);
        }
        return Rows(PoolColumns, rows);
    }

    private AdminResultSet Clients()
    {
        var now = time.GetUtcNow();
        var rows = new List<string?[]>();
        foreach (var session in clients.Sessions.OfType<IDescribedClient>().Select(c => c.Describe()).OrderBy(c => c.Id))
        {
            rows.Add([
                N(session.Id), session.User, session.Database, session.Tenant, session.ApplicationName, session.State, session.Remote,
                N((long)(now - session.ConnectedAt).TotalSeconds), session.ServerId is { } id ? N(id) : null, session.Protocol, session.Tls,
            ]);
        }
        return Rows(ClientColumns, rows);
    }

    private AdminResultSet Servers()
    {
        var rows = new List<string?[]>();
        foreach (var server in inventory.GetServers().OrderBy(s => s.Id))
        {
            rows.Add([
                N(server.Id), server.Database, server.User, server.Host, server.State, server.ClientId is { } id ? N(id) : null,
                N((long)server.Age.TotalSeconds), server.Transaction, N(server.PreparedStatements), server.Protocol,
            ]);
        }
        return Rows(ServerColumns, rows);
    }

    private AdminResultSet Tenants()
    {
        var rows = new List<string?[]>();
        if (qos is { Config.Enabled: true } gate)
        {
            foreach (var tenant in gate.GetTenants().OrderBy(t => t.Name, StringComparer.Ordinal))
            {
                string? allowance = null;
                if (policy is not null && policy.TryGetAllowance(tenant.Name, out var a))
                    allowance = a.Source switch
                    {
                        AllowanceSource.Lease => $"lease {D(a.RuPerSecond)} RU/s",
                        AllowanceSource.LocalShare => $"local share {D(a.RuPerSecond)} RU/s",
                        _ => "unlimited",
                    };
                foreach (var account in tenant.GetAccounts().OrderBy(x => x.Group.Name, StringComparer.Ordinal))
                {
                    var g = account.Group;
                    var bucket = account.Bucket.Settings;
                    rows.Add([
                        tenant.Name, g.Name, EdgeTelemetry.PriorityLabels[(int)g.Priority], B(tenant.IsConfigured), D(g.RuPerSecond), D(g.Burst), D(g.DebtMax),
                        D(bucket.RuPerSecond), D(account.Bucket.Balance), D(account.RuCharged), N(account.Admitted), N(account.BudgetWaits), N(account.BudgetRefused),
                        N(account.Shed), N(account.QueueTimeouts), N(account.RunawayRefused), N(account.RunawayCancelled),
                        ReferenceEquals(account, tenant.Home) ? allowance : null,
                    ]);
                }
            }
        }
        return Rows(TenantColumns, rows);
    }

    private AdminResultSet Fingerprints()
    {
        var rows = new List<string?[]>();
        if (qos is { Config.Enabled: true } gate)
        {
            var (top, others) = gate.Fingerprints.Snapshot();
            foreach (var f in top)
            {
                var own = telemetry?.Fingerprints.Contains(f.Tenant, f.Fingerprint) == true;
                rows.Add([
                    f.Tenant, TopFingerprints.Format(f.Fingerprint), N(f.Count), D(f.TotalRu), D(f.Count == 0 ? 0 : f.TotalRu / f.Count), D(f.MaxRu),
                    D(f.Count == 0 ? 0 : f.TotalLatencyMs / f.Count), D(f.MaxLatencyMs), D(f.ErrorRu), B(own),
                ]);
            }
            rows.Add([
                TopFingerprints.OtherTenant, TopFingerprints.OtherFingerprint, N(others.Count), D(others.TotalRu), D(others.Count == 0 ? 0 : others.TotalRu / others.Count),
                D(others.MaxRu), D(others.Count == 0 ? 0 : others.TotalLatencyMs / others.Count), D(others.MaxLatencyMs), D(0), B(false),
            ]);
        }
        return Rows(FingerprintColumns, rows);
    }

    private AdminResultSet Backends()
    {
        var rows = new List<string?[]>();
        foreach (var backends in inventory.GetBackends().OrderBy(b => b.Monitor.Database, StringComparer.Ordinal))
        {
            foreach (var b in backends.Topology.Backends)
            {
                rows.Add([
                    backends.Monitor.Database, N(b.Index), b.Endpoint.ToString(), b.Role.ToString().ToLowerInvariant(), b.Breaker.ToString().ToLowerInvariant(),
                    B(b.Reachable), B(b.ServesReads), b.Eligibility.ToString().ToLowerInvariant(), b.LagBytes is { } bytes ? N(bytes) : null,
                    b.LagTime is { } lag ? N((long)lag.TotalMilliseconds) : null, N(b.ConsecutiveFailures), b.LastError,
                ]);
            }
        }
        return Rows(BackendColumns, rows);
    }

    private AdminResultSet Config() => Rows(["key", "value"], ConfigView.Rows(config.Current));

    private AdminResultSet Stats()
    {
        var rows = new List<string?[]>();
        if (telemetry is not null)
        {
            foreach (var cell in telemetry.Queries.Snapshot().OrderBy(c => c.Database, StringComparer.Ordinal).ThenBy(c => c.Tenant, StringComparer.Ordinal))
            {
                long Count(UnitType type) => cell.Queries(type, false) + cell.Queries(type, true);
                long To(bool replica) => cell.Queries(UnitType.Unknown, replica) + cell.Queries(UnitType.Read, replica) + cell.Queries(UnitType.Write, replica);
                rows.Add([
                    cell.Database, cell.Tenant, N(Count(UnitType.Read)), N(Count(UnitType.Write)), N(Count(UnitType.Unknown)),
                    N(To(false)), N(To(true)), N(cell.BytesToClient), N(cell.BytesToServer),
                ]);
            }
        }
        return Rows(StatsColumns, rows);
    }

    private AdminResultSet PolicyStatus()
    {
        var rows = new List<string?[]>();
        var settings = config.Current.Policy;
        rows.Add(["mode", settings.Embedded ? "embedded" : "silos"]);
        if (policy is not null)
        {
            var status = policy.Status;
            rows.Add(["state", status.State.ToString().ToLowerInvariant()]);
            rows.Add(["degraded", B(status.IsDegraded)]);
            rows.Add(["degraded_tenants", N(status.DegradedTenants)]);
            rows.Add(["consecutive_failures", N(status.ConsecutiveFailures)]);
            rows.Add(["last_success", status.LastSuccess?.ToString("O", CultureInfo.InvariantCulture)]);
            rows.Add(["last_error", status.LastError]);
            rows.Add(["live_edges", N(status.LiveEdges)]);
            rows.Add(["config_version", N(status.ConfigVersion)]);
        }
        return Rows(["key", "value"], rows);
    }

    private AdminReply RunReload()
    {
        if (reloader is null)
            return AdminReply.Fail(AdminSqlState.FeatureNotSupported, "mproxy: this edge cannot reload its configuration");
        var outcome = reloader.Reload("admin console");
        if (!outcome.Applied)
            return AdminReply.Fail(AdminSqlState.ConfigFileError, outcome.Message);
        return AdminReply.Of(new AdminResultSet(ReloadColumns, [["applied", N(outcome.Generation), outcome.Message]], "RELOAD")
        {
            Notices = [.. outcome.KeptUntilRestart.Select(key => $"mproxy: {key} changed; it takes effect only at restart")],
        });
    }

    private AdminResultSet Reload() => throw new InvalidOperationException("RELOAD runs through RunReload");
}
