using System.Globalization;

namespace MProxy.TestSupport;

/// <summary>An mproxy edge in this test process with its MySQL listener on a free loopback port.</summary>
public sealed class MySqlEdgeServer : IAsyncDisposable
{
    private MySqlEdgeServer(EdgeServer edge, int port)
    {
        Edge = edge;
        Port = port;
    }

    public EdgeServer Edge { get; }

    /// <summary>The MySQL listener's port.</summary>
    public int Port { get; }

    public T Get<T>() where T : notnull => Edge.Get<T>();

    /// <summary>Starts an edge from YAML that has no <c>listen:</c> section (one is added, with both listeners on free ports).</summary>
    public static async Task<MySqlEdgeServer> StartAsync(string yaml, Microsoft.Extensions.Logging.LogLevel logLevel = Microsoft.Extensions.Logging.LogLevel.Warning)
    {
        var port = FreePort.Next();
        yaml = $"listen:\n  postgres: 127.0.0.1:{{port}}\n  mysql: 127.0.0.1:{port.ToString(CultureInfo.InvariantCulture)}\n" + yaml;
        var edge = await EdgeServer.StartAsync(yaml, logLevel);
        return new MySqlEdgeServer(edge, port);
    }

    /// <summary>YAML for an edge in front of <paramref name="server"/> serving MySQL database <c>app</c> (and <c>other</c>) to users <c>app</c> and <c>other</c>.</summary>
    public static string AppConfig(MariaDbServer server, string poolMode = "transaction", int poolSize = 4, int waitTimeoutMs = 2000, string extra = "", string databaseExtra = "") => $"""
        auth:
          method: md5
        users:
          - name: {MariaDbServer.AppUser}
            password: {MariaDbServer.Password}
          - name: {MariaDbServer.OtherUser}
            password: {MariaDbServer.Password}
        pool:
          mode: {poolMode}
          size: {poolSize}
          waitTimeoutMs: {waitTimeoutMs}
        databases:
          - name: {MariaDbServer.AppDatabase}
            protocol: mysql
            primary: 127.0.0.1:{server.Port}
        {databaseExtra}
          - name: {MariaDbServer.OtherDatabase}
            protocol: mysql
            primary: 127.0.0.1:{server.Port}
        {extra}
        """;

    public ValueTask DisposeAsync() => Edge.DisposeAsync();
}
