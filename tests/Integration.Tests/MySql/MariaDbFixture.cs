using MProxy.TestSupport;
using MySql.Data.MySqlClient;

namespace MProxy.Integration.Tests.MySql;

/// <summary>One real MariaDB server shared by the MySQL integration tests (which run one class at a time).</summary>
public sealed class MariaDbFixture : IAsyncLifetime
{
    private MariaDbServer? _server;

    public MariaDbServer Server => _server ?? throw new InvalidOperationException("MariaDB did not start");

    public async ValueTask InitializeAsync() => _server = await MariaDbServer.StartAsync();

    public async ValueTask DisposeAsync()
    {
        if (_server is not null)
            await _server.DisposeAsync();
    }

    /// <summary>A MySql.Data connection string for the edge's MySQL listener (or any port).</summary>
    public static string ConnectionString(int port, string user = MariaDbServer.AppUser, string? password = MariaDbServer.Password, string database = MariaDbServer.AppDatabase, string extra = "") =>
        $"Server=127.0.0.1;Port={port};User Id={user};Password={password};Database={database};SslMode=None;Pooling=false;Connection Timeout=10;Default Command Timeout=30;{extra}";

    public static async Task<MySqlConnection> OpenAsync(int port, string user = MariaDbServer.AppUser, string? password = MariaDbServer.Password, string database = MariaDbServer.AppDatabase, string extra = "")
    {
        var connection = new MySqlConnection(ConnectionString(port, user, password, database, extra));
        await connection.OpenAsync();
        return connection;
    }

    public static async Task<object?> ScalarAsync(MySqlConnection connection, string sql, MySqlTransaction? transaction = null)
    {
        await using var command = new MySqlCommand(sql, connection, transaction);
        var value = await command.ExecuteScalarAsync();
        return value is DBNull ? null : value;
    }
}

[CollectionDefinition(Name)]
public sealed class MariaDbCollection : ICollectionFixture<MariaDbFixture>
{
    public const string Name = "MariaDB";
}
