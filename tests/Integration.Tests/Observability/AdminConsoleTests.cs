using System.Globalization;
using MProxy.TestSupport;
using Npgsql;

namespace MProxy.Integration.Tests.Observability;

/// <summary>The admin console (virtual database <c>mproxy</c>) through psql and Npgsql, with real traffic behind it.</summary>
[Collection(ObservedEdge.Collection)]
public sealed class AdminConsoleTests(PostgresFixture postgres) : IAsyncLifetime
{
    private const string Tenant = "console_tenant";

    private PostgresServer Server => postgres.Server;

    public async ValueTask InitializeAsync() =>
        await Server.ExecuteAsync($"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{Tenant}') THEN CREATE ROLE {Tenant} LOGIN PASSWORD '{PostgresServer.Password}'; END IF; END $$");

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;

    private string Config => ObservedEdge.Users(Server, Tenant) + $"""
        pool: {"{"} size: 2, waitTimeoutMs: 5000 {"}"}
        qos:
          groups:
            - {"{"} name: oltp, ruPerSecond: 5000, burst: 5000, priority: medium {"}"}
          tenants:
            - {"{"} name: {Tenant}, group: oltp {"}"}
        """;

    private static Dictionary<string, string> PsqlEnv(string password) => new() { ["PGPASSWORD"] = password, ["PGCONNECT_TIMEOUT"] = "10" };

    private static Task<ProcessResult> PsqlAsync(ObservedEdge edge, string user, string password, params string[] commands)
    {
        List<string> arguments = ["-h", "127.0.0.1", "-p", edge.Port.ToString(CultureInfo.InvariantCulture), "-U", user, "-d", "mproxy", "-X", "-v", "ON_ERROR_STOP=1"];
        foreach (var command in commands)
        {
            arguments.Add("-c");
            arguments.Add(command);
        }
        return ProcessRunner.RunAsync("psql", arguments, PsqlEnv(password));
    }

    private static async Task RunTrafficAsync(ObservedEdge edge, NpgsqlConnection connection, int count)
    {
        for (var i = 0; i < count; i++)
        {
            await using var command = new NpgsqlCommand("SELECT $1::int + 1", connection);
            command.Parameters.AddWithValue(i);
            Assert.Equal(i + 1, await command.ExecuteScalarAsync());
        }
        _ = edge;
    }

    [Fact]
    public async Task Npgsql_EveryShowCommand_AnswersAResultSet()
    {
        await using var edge = await ObservedEdge.StartAsync(Config);
        await using var app = await edge.OpenAsync(Tenant);
        var admittedBefore = long.Parse(Assert.Single(await edge.AdminAsync("SHOW TENANTS"), t => t["tenant"] == Tenant)["admitted"]!, CultureInfo.InvariantCulture);
        await RunTrafficAsync(edge, app, 5);

        var pools = await edge.AdminAsync("SHOW POOLS");
        var pool = Assert.Single(pools);
        Assert.Equal("app", pool["database"]);
        Assert.Equal("2", pool["pool_size"]);
        Assert.Equal("transaction", pool["pool_mode"]);

        var clients = await edge.AdminAsync("SHOW CLIENTS");
        Assert.Contains(clients, c => c["user"] == Tenant && c["database"] == "app" && c["tenant"] == Tenant);
        Assert.Contains(clients, c => c["user"] == ObservedEdge.Admin && c["database"] == "mproxy");

        var servers = await edge.AdminAsync("SHOW SERVERS");
        Assert.NotEmpty(servers);
        Assert.All(servers, s => Assert.Equal("app", s["database"]));
        Assert.Contains(servers, s => s["host"] == $"127.0.0.1:{Server.Port}");

        var tenants = await edge.AdminAsync("SHOW TENANTS");
        var tenant = Assert.Single(tenants, t => t["tenant"] == Tenant);
        Assert.Equal("oltp", tenant["group"]);
        Assert.Equal("medium", tenant["priority"]);
        Assert.Equal("5000", tenant["ru_per_second"]);
        Assert.Equal(admittedBefore + 5, long.Parse(tenant["admitted"]!, CultureInfo.InvariantCulture));

        var fingerprints = await edge.AdminAsync("SHOW FINGERPRINTS");
        Assert.Contains(fingerprints, f => f["tenant"] == Tenant && f["calls"] == "5"); // SELECT $1::int + 1

        var backends = await edge.AdminAsync("SHOW BACKENDS");
        var backend = Assert.Single(backends);
        Assert.Equal("primary", backend["role"]);
        Assert.Equal("closed", backend["breaker"]);

        var config = await edge.AdminAsync("SHOW CONFIG");
        Assert.Contains(config, r => r["key"] == "users[1].admin" && r["value"] == "true");
        Assert.Contains(config, r => r["key"] == "qos.groups[0].ruPerSecond" && r["value"] == "5000");

        var reload = Assert.Single(await edge.AdminAsync("RELOAD"));
        Assert.Equal("applied", reload["result"]);
        Assert.Equal("2", reload["generation"]);
        await using var after = new NpgsqlCommand("SELECT 1", app);
        Assert.Equal(1, await after.ExecuteScalarAsync()); // the client stays connected
    }

    [Fact]
    public async Task ShowConfig_NeverShowsSecrets()
    {
        await using var edge = await ObservedEdge.StartAsync(Config + """

            telemetry:
              otlp:
                endpoint: http://127.0.0.1:9/
                headers: { api-key: otlp-header-secret }
                traces: false
                metrics: false
            """);

        var config = await edge.AdminAsync("SHOW CONFIG");
        var psql = await PsqlAsync(edge, ObservedEdge.Admin, ObservedEdge.AdminPassword, "SHOW CONFIG");

        Assert.True(psql.ExitCode == 0, psql.Output);
        Assert.Contains(config, r => r["key"] == "users[0].password" && r["value"] == "(hidden)");
        Assert.Contains(config, r => r["key"] == "databases[0].serverPassword" && r["value"] == "(hidden)");
        foreach (var secret in new[] { PostgresServer.Password, ObservedEdge.AdminPassword, "otlp-header-secret" })
        {
            Assert.DoesNotContain(config, r => (r["value"] ?? "").Contains(secret, StringComparison.Ordinal));
            Assert.DoesNotContain(secret, psql.Stdout, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task Psql_ShowCommands_PrintedAsTables()
    {
        await using var edge = await ObservedEdge.StartAsync(Config);
        await using var app = await edge.OpenAsync(Tenant);
        await RunTrafficAsync(edge, app, 3);

        var result = await PsqlAsync(edge, ObservedEdge.Admin, ObservedEdge.AdminPassword,
            "SHOW POOLS", "SHOW CLIENTS", "SHOW SERVERS", "SHOW TENANTS", "SHOW FINGERPRINTS", "SHOW BACKENDS", "SHOW CONFIG", "RELOAD", "show help;");

        Assert.True(result.ExitCode == 0, result.Output);
        // Column names without psql's alignment padding.
        var output = System.Text.RegularExpressions.Regex.Replace(result.Stdout, " +", " ");
        // psql's aligned format: a header line, a rule, rows, "(n rows)".
        Assert.Contains(" database | user | host ", output, StringComparison.Ordinal);
        Assert.Contains("(1 row)", output, StringComparison.Ordinal);
        Assert.Contains(Tenant, output, StringComparison.Ordinal);
        Assert.Contains(" tenant | fingerprint | calls ", output, StringComparison.Ordinal);
        Assert.Contains(" database | index | host | role ", output, StringComparison.Ordinal);
        Assert.Contains("qos.groups[0].ruPerSecond", output, StringComparison.Ordinal);
        Assert.Contains(" result | generation | message", output, StringComparison.Ordinal);
        Assert.Contains(" applied | 2 ", output, StringComparison.Ordinal);
        Assert.Contains("SHOW FINGERPRINTS", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Psql_NonAdminUser_RefusedWithAClearError()
    {
        await using var edge = await ObservedEdge.StartAsync(Config);

        var result = await PsqlAsync(edge, Tenant, PostgresServer.Password, "SHOW POOLS");

        Assert.NotEqual(0, result.ExitCode);
        Assert.Contains("may not use the admin console", result.Stderr, StringComparison.Ordinal);
        Assert.DoesNotContain(" database | user", result.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Npgsql_NonAdminUser_RefusedWithInsufficientPrivilege()
    {
        await using var edge = await ObservedEdge.StartAsync(Config);

        var e = await Assert.ThrowsAsync<PostgresException>(() => edge.OpenAsync(PostgresServer.AppUser, PostgresServer.Password, "mproxy"));

        Assert.Equal("42501", e.SqlState);
        Assert.StartsWith("mproxy:", e.MessageText, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Npgsql_AdminWithWrongPassword_RefusedLikeAnyUser()
    {
        await using var edge = await ObservedEdge.StartAsync(Config);

        var e = await Assert.ThrowsAsync<PostgresException>(() => edge.OpenAsync(ObservedEdge.Admin, "not-the-password", "mproxy"));

        Assert.Equal("28P01", e.SqlState);
    }

    [Fact]
    public async Task Npgsql_UnknownCommand_ErrorAndTheSessionGoesOn()
    {
        await using var edge = await ObservedEdge.StartAsync(Config);
        await using var admin = await edge.OpenAdminAsync();

        await using (var bad = new NpgsqlCommand("SHOW EVERYTHING", admin))
        {
            var e = await Assert.ThrowsAsync<PostgresException>(() => bad.ExecuteReaderAsync());
            Assert.Equal("42601", e.SqlState);
            Assert.Contains("unknown admin command", e.MessageText, StringComparison.Ordinal);
        }
        await using var good = new NpgsqlCommand("SHOW VERSION", admin);
        Assert.NotNull(await good.ExecuteScalarAsync());
    }
}
