using System.Globalization;
using MProxy.Edge.Configuration;

namespace MProxy.Edge.Admin;

/// <summary>
/// The configuration snapshot in force as (key, value) rows for SHOW CONFIG, keyed as in the YAML
/// file. Secrets never appear: passwords, verifiers, hashes and OTLP header values show as
/// <c>(hidden)</c> when set, and user information in URLs is dropped.
/// </summary>
internal static class ConfigView
{
    public const string Hidden = "(hidden)";

    public static List<string?[]> Rows(EdgeConfig config)
    {
        var rows = new List<string?[]>();
        void Add(string key, object? value) => rows.Add([key, Format(value)]);

        Add("listen.postgres", config.Listen.Postgres);
        Add("listen.admin", config.Listen.Admin);
        Add("clients.maxConnections", config.Clients.MaxConnections);
        Add("clients.maxMessageBytes", config.Clients.MaxMessageBytes);
        Add("clients.loginTimeoutMs", config.Clients.LoginTimeout);
        Add("clients.maxPreparedStatements", config.Clients.MaxPreparedStatements);
        Add("shutdownTimeoutMs", config.ShutdownTimeout);
        Add("network.transport", config.Network.Transport == NetworkTransport.Epoll ? "epoll" : "sockets");
        if (config.Network.Transport == NetworkTransport.Epoll)
        {
            Add("network.epollLoops", config.Network.EpollLoops);
            Add("network.epollParking", config.Network.EpollParking);
        }
        Add("auth.method", config.Auth.Method switch { AuthMethod.ScramSha256 => "scram-sha-256", AuthMethod.Md5 => "md5", _ => "trust" });
        for (var i = 0; i < config.Users.Count; i++)
        {
            var u = config.Users[i];
            var key = $"users[{i}]";
            Add($"{key}.name", u.Name);
            Add($"{key}.admin", u.Admin);
            if (u.Password is not null)
                Add($"{key}.password", Hidden);
            if (u.ScramVerifier is not null)
                Add($"{key}.scramVerifier", Hidden);
            if (u.Md5Hash is not null)
                Add($"{key}.md5", Hidden);
            if (u.ServerPassword is not null)
                Add($"{key}.serverPassword", Hidden);
        }
        for (var i = 0; i < config.Databases.Count; i++)
        {
            var d = config.Databases[i];
            var key = $"databases[{i}]";
            Add($"{key}.name", d.Name);
            Add($"{key}.protocol", d.Protocol == DatabaseProtocol.MySql ? "mysql" : "postgres");
            Add($"{key}.serverDatabase", d.ServerDatabase);
            Add($"{key}.primary", d.Primary);
            if (d.ServerUser is not null)
                Add($"{key}.serverUser", d.ServerUser);
            if (d.ServerPassword is not null)
                Add($"{key}.serverPassword", Hidden);
            var p = d.Pool;
            Add($"{key}.pool.mode", p.Mode == PoolMode.Session ? "session" : "transaction");
            Add($"{key}.pool.size", p.Size);
            Add($"{key}.pool.minSize", p.MinSize);
            Add($"{key}.pool.waitTimeoutMs", p.WaitTimeout);
            Add($"{key}.pool.connectTimeoutMs", p.ConnectTimeout);
            Add($"{key}.pool.idleTimeoutMs", p.IdleTimeout);
            Add($"{key}.pool.lifetimeMs", p.Lifetime);
            Add($"{key}.pool.checkAfterIdleMs", p.CheckAfterIdle);
            Add($"{key}.pool.checkQuery", p.CheckQuery);
            Add($"{key}.pool.resetQuery", p.ResetQuery);
            Add($"{key}.pool.maxPreparedStatements", p.MaxPreparedStatements);
            Add($"{key}.pool.deferBegin", p.DeferBegin);
            if (d.Backends is { } b)
            {
                Add($"{key}.backends.mode", b.Mode.ToString().ToLowerInvariant());
                Add($"{key}.backends.hosts", string.Join(", ", b.Hosts));
                Add($"{key}.backends.healthCheckIntervalMs", b.HealthCheckInterval);
                Add($"{key}.backends.maxReplicaLagBytes", b.MaxReplicaLagBytes);
                Add($"{key}.backends.maxReplicaLagMs", b.MaxReplicaLag);
                Add($"{key}.backends.primaryServesReads", b.PrimaryServesReads);
                Add($"{key}.backends.readYourWrites", b.ReadYourWrites);
                Add($"{key}.backends.failoverWaitMs", b.FailoverWait);
                if (b.Monitor is { } monitor)
                {
                    Add($"{key}.backends.monitor.user", monitor.User);
                    if (monitor.Password is not null)
                        Add($"{key}.backends.monitor.password", Hidden);
                }
            }
        }
        var q = config.Qos;
        Add("qos.enabled", q.Enabled);
        if (q.Enabled)
        {
            Add("qos.tenantFrom", q.TenantFrom.ToString());
            Add("qos.defaultGroup", q.DefaultGroup);
            Add("qos.maxTenants", q.MaxTenants);
            Add("qos.hintPolicy", q.HintPolicy);
            Add("qos.codel.enabled", q.CoDel.Enabled);
            Add("qos.codel.targetMs", q.CoDel.Target);
            Add("qos.codel.intervalMs", q.CoDel.Interval);
            for (var i = 0; i < q.Groups.Count; i++)
            {
                var g = q.Groups[i];
                var key = $"qos.groups[{i}]";
                Add($"{key}.name", g.Name);
                Add($"{key}.ruPerSecond", g.RuPerSecond);
                Add($"{key}.burst", g.Burst);
                Add($"{key}.debtMax", g.DebtMax);
                Add($"{key}.priority", g.Priority.ToString().ToLowerInvariant());
                Add($"{key}.weight", g.Weight);
                Add($"{key}.maxConcurrent", g.MaxConcurrent == int.MaxValue ? null : g.MaxConcurrent);
                Add($"{key}.statementTimeoutMs", g.StatementTimeout);
                Add($"{key}.maxBudgetWaitMs", g.MaxBudgetWait);
                if (g.ServerSettings.Count > 0)
                    Add($"{key}.serverSettings", string.Join(", ", g.ServerSettings.Select(s => $"{s.Key}={s.Value}")));
                if (g.Alternatives.Count > 0)
                    Add($"{key}.alternatives", string.Join(", ", g.Alternatives));
            }
            for (var i = 0; i < q.Tenants.Count; i++)
            {
                var t = q.Tenants[i];
                Add($"qos.tenants[{i}].name", t.Name);
                Add($"qos.tenants[{i}].group", t.Group);
                if (t.Match.Count > 0)
                    Add($"qos.tenants[{i}].match", string.Join(", ", t.Match));
            }
            for (var i = 0; i < q.Runaway.Rules.Count; i++)
            {
                var r = q.Runaway.Rules[i];
                Add($"qos.runaway.rules[{i}].name", r.Name);
                Add($"qos.runaway.rules[{i}].action", r.Action.ToString().ToLowerInvariant());
                Add($"qos.runaway.rules[{i}].shadow", r.Shadow);
            }
        }
        var policy = config.Policy;
        Add("policy.mode", policy.Embedded ? "embedded" : "silos");
        if (!policy.Embedded)
            Add("policy.silos", string.Join(", ", policy.Silos.Select(WithoutUserInfo)));
        if (policy.File is not null)
            Add("policy.file", policy.File);
        Add("policy.edgeId", policy.EdgeId);
        Add("policy.callTimeoutMs", policy.CallTimeout);
        var t2 = config.Telemetry;
        Add("telemetry.metrics", t2.Metrics);
        Add("telemetry.topFingerprints", t2.TopFingerprints);
        Add("telemetry.traces.sampleRatio", t2.TraceSampleRatio);
        if (t2.Otlp is { } otlp)
        {
            Add("telemetry.otlp.endpoint", WithoutUserInfo(otlp.Endpoint));
            Add("telemetry.otlp.protocol", otlp.Protocol == Telemetry.OtlpProtocol.Grpc ? "grpc" : "http/protobuf");
            Add("telemetry.otlp.exportIntervalMs", otlp.ExportInterval);
            Add("telemetry.otlp.serviceName", otlp.ServiceName);
            foreach (var name in otlp.Headers.Keys)
                Add($"telemetry.otlp.headers.{name}", Hidden);
        }
        Add("reload.watchFile", config.Reload.WatchFile);
        Add("reload.debounceMs", config.Reload.Debounce);
        return rows;
    }

    private static string WithoutUserInfo(Uri uri) =>
        uri.UserInfo.Length == 0 ? uri.ToString() : new UriBuilder(uri) { UserName = "", Password = "" }.Uri.ToString();

    internal static string? Format(object? value) => value switch
    {
        null => null,
        bool b => b ? "true" : "false",
        TimeSpan t => ((long)t.TotalMilliseconds).ToString(CultureInfo.InvariantCulture),
        double d => d.ToString("0.######", CultureInfo.InvariantCulture),
        IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
        _ => value.ToString(),
    };
}
