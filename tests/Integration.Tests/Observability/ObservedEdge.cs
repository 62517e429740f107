using System.Globalization;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using MProxy.Edge.Configuration;
using MProxy.Edge.Hosting;
using MProxy.TestSupport;
using Npgsql;

namespace MProxy.Integration.Tests.Observability;

/// <summary>
/// An edge started from a YAML file (so that it can reload it) with the admin HTTP port on, plus
/// what the observability tests need: scraping /metrics, and admin-console connections.
/// </summary>
internal sealed class ObservedEdge : IAsyncDisposable
{
    /// <summary>
    /// The observability tests run one class at a time: the trace tests listen to every edge's
    /// spans. (The SIGHUP test, which signals every edge of the process, runs alone: <see cref="RunsAlone"/>.)
    /// </summary>
    public const string Collection = "Observability";

    public const string Admin = "ops";
    public const string AdminPassword = "ops-pw";

    private readonly WebApplication _app;
    private readonly HttpClient _http = new();
    private readonly List<NpgsqlDataSource> _sources = [];

    private readonly LogCapture _logs;

    private ObservedEdge(WebApplication app, LogCapture logs, string directory, string file, int port, int adminPort, int? mySqlPort)
    {
        MySqlPort = mySqlPort;
        _app = app;
        _logs = logs;
        Directory = directory;
        ConfigFile = file;
        Port = port;
        AdminPort = adminPort;
    }

    public string Directory { get; }

    public string ConfigFile { get; }

    public int Port { get; }

    public int AdminPort { get; }

    /// <summary>The MySQL listener's port, when the edge was started with one.</summary>
    public int? MySqlPort { get; }

    public T Get<T>() where T : notnull => _app.Services.GetRequiredService<T>();

    /// <summary>A service of the edge, or null when this configuration has none.</summary>
    public T? Find<T>() where T : class => _app.Services.GetService<T>();

    /// <summary>GET <paramref name="path"/> on the admin port.</summary>
    public Task<HttpResponseMessage> GetAdminAsync(string path) => _http.GetAsync(new Uri($"http://127.0.0.1:{AdminPort}{path}"));

    /// <summary>The edge's log events so far (Information and up).</summary>
    public IReadOnlyList<CapturedLog> Logs() => _logs.Events;

    /// <summary>Writes <paramref name="body"/> (without a listen section) to a file and starts an edge from it.</summary>
    public static async Task<ObservedEdge> StartAsync(string body, bool mySqlListener = false)
    {
        var directory = System.IO.Directory.CreateTempSubdirectory("mproxy-obs-").FullName;
        var file = Path.Combine(directory, "mproxy.yaml");
        var port = FreePort.Next();
        var adminPort = FreePort.Next();
        int? mySqlPort = mySqlListener ? FreePort.Next() : null;
        await File.WriteAllTextAsync(file, Listen(port, adminPort, mySqlPort) + body);
        var overrides = new CommandLineOverrides { ConfigFile = file };
        var logs = new LogCapture();
        var app = EdgeHost.Build(ConfigLoader.Load(overrides), LogLevel.Information, source: overrides, logs: logs);
        await app.StartAsync();
        return new ObservedEdge(app, logs, directory, file, port, adminPort, mySqlPort);
    }

    private static string Listen(int port, int adminPort, int? mySqlPort) => string.Create(CultureInfo.InvariantCulture, $"""
        listen:
          postgres: 127.0.0.1:{port}
          admin: 127.0.0.1:{adminPort}
        {(mySqlPort is { } mysql ? $"  mysql: 127.0.0.1:{mysql}\n" : "")}
        """);

    /// <summary>Replaces the file's content (the listen section stays).</summary>
    public Task RewriteAsync(string body) => File.WriteAllTextAsync(ConfigFile, Listen(Port, AdminPort, MySqlPort) + body);

    /// <summary>Users and the database <c>app</c> on <paramref name="server"/>, with an admin user.</summary>
    public static string Users(PostgresServer server, params string[] extraUsers) => $"""
        users:
          - name: {PostgresServer.AppUser}
            password: {PostgresServer.Password}
          - name: {Admin}
            password: {AdminPassword}
            admin: true
        {string.Concat(extraUsers.Select(u => $"  - {{ name: {u}, password: {PostgresServer.Password} }}\n"))}databases:
          - name: {PostgresServer.AppDatabase}
            primary: 127.0.0.1:{server.Port}
            serverUser: {PostgresServer.AppUser}
            serverPassword: {PostgresServer.Password}

        """;

    public async Task<(PrometheusScrape Scrape, string ContentType)> ScrapeAsync()
    {
        using var response = await GetAdminAsync("/metrics");
        response.EnsureSuccessStatusCode();
        var text = await response.Content.ReadAsStringAsync();
        return (PrometheusScrape.Parse(text), response.Content.Headers.ContentType?.ToString() ?? "");
    }

    public string ConnectionString(string user = PostgresServer.AppUser, string password = PostgresServer.Password, string database = PostgresServer.AppDatabase) =>
        new NpgsqlConnectionStringBuilder
        {
            Host = "127.0.0.1",
            Port = Port,
            Username = user,
            Password = password,
            Database = database,
            Pooling = false,
            Timeout = 10,
            CommandTimeout = 30,
        }.ConnectionString;

    public async Task<NpgsqlConnection> OpenAsync(string user = PostgresServer.AppUser, string password = PostgresServer.Password, string database = PostgresServer.AppDatabase)
    {
        var builder = new NpgsqlDataSourceBuilder(ConnectionString(user, password, database));
        // The console is not a PostgreSQL server: it has no pg_type to load types from (as with PgBouncer's).
        if (database == "mproxy")
            builder.ConfigureTypeLoading(t => t.EnableTypeLoading(false));
        var source = builder.Build();
        _sources.Add(source);
        return await source.OpenConnectionAsync();
    }

    public Task<NpgsqlConnection> OpenAdminAsync() => OpenAsync(Admin, AdminPassword, "mproxy");

    /// <summary>Runs an admin command through Npgsql (extended protocol) and returns its rows as column → value maps.</summary>
    public async Task<List<Dictionary<string, string?>>> AdminAsync(string command)
    {
        await using var connection = await OpenAdminAsync();
        await using var cmd = new NpgsqlCommand(command, connection);
        await using var reader = await cmd.ExecuteReaderAsync();
        var rows = new List<Dictionary<string, string?>>();
        while (await reader.ReadAsync())
        {
            var row = new Dictionary<string, string?>(StringComparer.Ordinal);
            for (var i = 0; i < reader.FieldCount; i++)
                row[reader.GetName(i)] = reader.IsDBNull(i) ? null : reader.GetString(i);
            rows.Add(row);
        }
        return rows;
    }

    /// <summary>Polls <paramref name="condition"/> until it holds or <paramref name="timeout"/> passes.</summary>
    public static async Task<bool> EventuallyAsync(Func<Task<bool>> condition, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(15));
        while (true)
        {
            if (await condition())
                return true;
            if (DateTime.UtcNow > deadline)
                return false;
            await Task.Delay(50);
        }
    }

    public async ValueTask DisposeAsync()
    {
        _http.Dispose();
        foreach (var source in _sources)
            await source.DisposeAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        try
        {
            await _app.StopAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
        }
        await _app.DisposeAsync();
        try
        {
            System.IO.Directory.Delete(Directory, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}

[CollectionDefinition(ObservedEdge.Collection)]
public sealed class ObservabilityCollection;
