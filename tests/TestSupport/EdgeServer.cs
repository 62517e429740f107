using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using MProxy.Edge.Configuration;
using MProxy.Edge.Hosting;
using Npgsql;

namespace MProxy.TestSupport;

/// <summary>An mproxy edge running in this test process on a free loopback port.</summary>
public sealed class EdgeServer : IAsyncDisposable
{
    private readonly WebApplication _app;

    private EdgeServer(WebApplication app, EdgeConfig config, int port)
    {
        _app = app;
        Config = config;
        Port = port;
    }

    public EdgeConfig Config { get; }

    public int Port { get; }

    public IServiceProvider Services => _app.Services;

    public T Get<T>() where T : notnull => _app.Services.GetRequiredService<T>();

    /// <summary>
    /// Starts an edge from YAML; <c>{port}</c> in the text is replaced by the edge's listen port
    /// (a <c>listen.postgres</c> key is added when the YAML has none).
    /// </summary>
    public static async Task<EdgeServer> StartAsync(string yaml, LogLevel logLevel = LogLevel.Warning, TimeProvider? time = null)
    {
        var port = FreePort.Next();
        yaml = yaml.Replace("{port}", port.ToString(System.Globalization.CultureInfo.InvariantCulture), StringComparison.Ordinal);
        if (!yaml.Contains("listen:", StringComparison.Ordinal))
            yaml = $"listen:\n  postgres: 127.0.0.1:{port}\n" + yaml;
        var config = ConfigLoader.LoadYaml(yaml);
        var app = EdgeHost.Build(config, logLevel, time);
        await app.StartAsync();
        return new EdgeServer(app, config, config.Listen.Postgres!.Port);
    }

    /// <summary>YAML for an edge in front of <paramref name="server"/> serving database <c>app</c> to user <c>app</c>.</summary>
    public static string AppConfig(PostgresServer server, string poolMode = "transaction", int poolSize = 4, int waitTimeoutMs = 2000, string extra = "") => $"""
        users:
          - name: {PostgresServer.AppUser}
            password: {PostgresServer.Password}
        pool:
          mode: {poolMode}
          size: {poolSize}
          waitTimeoutMs: {waitTimeoutMs}
        databases:
          - name: {PostgresServer.AppDatabase}
            primary: 127.0.0.1:{server.Port}
        {extra}
        """;

    public string ConnectionString(string user = PostgresServer.AppUser, string database = PostgresServer.AppDatabase, string? password = PostgresServer.Password, bool pooling = false) =>
        new NpgsqlConnectionStringBuilder
        {
            Host = "127.0.0.1",
            Port = Port,
            Username = user,
            Database = database,
            Password = password,
            Pooling = pooling,
            Timeout = 10,
            CommandTimeout = 30,
        }.ConnectionString;

    public async Task<NpgsqlConnection> OpenAsync(string user = PostgresServer.AppUser, string database = PostgresServer.AppDatabase, string? password = PostgresServer.Password)
    {
        var connection = new NpgsqlConnection(ConnectionString(user, database, password));
        await connection.OpenAsync();
        return connection;
    }

    public Task StopAsync() => _app.StopAsync();

    public async ValueTask DisposeAsync()
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        try
        {
            await _app.StopAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
        }
        await _app.DisposeAsync();
    }
}
