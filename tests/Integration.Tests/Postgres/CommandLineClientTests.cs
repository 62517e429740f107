using System.Globalization;
using MProxy.TestSupport;

namespace MProxy.Integration.Tests.Postgres;

/// <summary>psql and pgbench, the command-line clients operators use, through the edge.</summary>
public sealed class CommandLineClientTests(PostgresFixture postgres)
{
    private static Dictionary<string, string> Env => new() { ["PGPASSWORD"] = PostgresServer.Password, ["PGCONNECT_TIMEOUT"] = "10" };

    private static string[] Connection(EdgeServer edge) =>
        ["-h", "127.0.0.1", "-p", edge.Port.ToString(CultureInfo.InvariantCulture), "-U", PostgresServer.AppUser];

    [Fact]
    public async Task Psql_RunsQueriesAndMetaCommands()
    {
        await using var edge = await EdgeServer.StartAsync(EdgeServer.AppConfig(postgres.Server, poolSize: 2));
        var result = await ProcessRunner.RunAsync("psql",
            [.. Connection(edge), "-d", PostgresServer.AppDatabase, "-X", "-v", "ON_ERROR_STOP=1", "-At",
             "-c", "SELECT 6 * 7", "-c", "\\dt pg_catalog.pg_class", "-c", "SELECT current_setting('application_name')"],
            Env);
        Assert.True(result.ExitCode == 0, result.Output);
        var lines = result.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("42", lines[0]);
        Assert.Contains(lines, l => l.Contains("pg_class", StringComparison.Ordinal));
        Assert.Equal("psql", lines[^1]);
    }

    [Fact]
    public async Task Psql_ReportsServerErrorsWithTheirSqlState()
    {
        await using var edge = await EdgeServer.StartAsync(EdgeServer.AppConfig(postgres.Server, poolSize: 2));
        var result = await ProcessRunner.RunAsync("psql",
            [.. Connection(edge), "-d", PostgresServer.AppDatabase, "-X", "-v", "VERBOSITY=verbose", "-c", "SELECT * FROM no_such_table"], Env);
        Assert.NotEqual(0, result.ExitCode);
        Assert.Contains("42P01", result.Stderr);
    }

    [Theory]
    [InlineData("simple")]
    [InlineData("extended")]
    public async Task Pgbench_ManyClientsOverFewServerConnections_NoFailedTransactions(string protocol)
    {
        await using var edge = await EdgeServer.StartAsync(EdgeServer.AppConfig(postgres.Server, poolSize: 4, waitTimeoutMs: 30_000));
        var database = "bench_" + protocol;
        await postgres.Server.ExecuteAsync($"DROP DATABASE IF EXISTS {database}");
        await postgres.Server.ExecuteAsync($"CREATE DATABASE {database} OWNER app");
        await using var benchEdge = await EdgeServer.StartAsync($"""
            users:
              - name: app
                password: {PostgresServer.Password}
            pool:
              size: 4
              waitTimeoutMs: 30000
            databases:
              - name: {database}
                primary: 127.0.0.1:{postgres.Server.Port}
            """);
        var init = await ProcessRunner.RunAsync("pgbench", [.. Connection(benchEdge), "-i", "-s", "1", "-q", database], Env, TimeSpan.FromMinutes(3));
        Assert.True(init.ExitCode == 0, init.Output);

        var run = await ProcessRunner.RunAsync("pgbench",
            [.. Connection(benchEdge), "-c", "16", "-j", "2", "-t", "50", "-M", protocol, "-n", database], Env, TimeSpan.FromMinutes(3));
        Assert.True(run.ExitCode == 0, run.Output);
        Assert.Contains("number of transactions actually processed: 800/800", run.Stdout);
        Assert.Contains("number of failed transactions: 0", run.Stdout);
        Assert.Equal(800L * 1 + 0, await postgres.Server.ScalarAsync("SELECT count(*) FROM pgbench_history", database) is long n ? n : -1);
    }
}
