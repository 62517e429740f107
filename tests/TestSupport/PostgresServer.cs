using Npgsql;

namespace MProxy.TestSupport;

/// <summary>
/// A real PostgreSQL server from Debian's binaries, in a temporary directory on a free loopback port,
/// started and stopped by tests. As root, its processes run as the <c>postgres</c> user.
/// </summary>
/// <remarks>
/// Logins created by <see cref="StartAsync"/>: <c>postgres</c> (superuser, trust), and for each
/// server authentication method a user named after it with password <see cref="Password"/>:
/// <c>scram_user</c> (scram-sha-256), <c>md5_user</c> (md5), <c>clear_user</c> (cleartext password),
/// <c>trust_user</c> (trust); plus <c>app</c> (scram-sha-256), owner of database <c>app</c>.
/// </remarks>
public sealed class PostgresServer : IAsyncDisposable
{
    public const string Password = "s3cret-pw";
    public const string AppUser = "app";
    public const string AppDatabase = "app";

    private PostgresServer(string directory, int port, bool isReplica)
    {
        Directory = directory;
        Port = port;
        IsReplica = isReplica;
    }

    public string Directory { get; }

    public string DataDirectory => Path.Combine(Directory, "data");

    public int Port { get; }

    public bool IsReplica { get; }

    public bool IsRunning { get; private set; }

    public static string BinDirectory
    {
        get
        {
            foreach (var candidate in new[] { "/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/17/bin" })
                if (File.Exists(Path.Combine(candidate, "postgres")))
                    return candidate;
            throw new InvalidOperationException("PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin: run .ci/run or apt-get install postgresql-15");
        }
    }

    public static string Bin(string tool) => Path.Combine(BinDirectory, tool);

    public string ConnectionString(string user = "postgres", string database = "postgres", string? password = null) =>
        new NpgsqlConnectionStringBuilder
        {
            Host = "127.0.0.1",
            Port = Port,
            Username = user,
            Database = database,
            Password = password ?? (user == "postgres" ? null : Password),
            Pooling = false,
            Timeout = 10,
        }.ConnectionString;

    public static async Task<PostgresServer> StartAsync(int maxConnections = 200)
    {
        var directory = CreateDirectory("mproxy-pg-");
        var server = new PostgresServer(directory, FreePort.Next(), isReplica: false);
        await server.InitializeAsync(maxConnections);
        return server;
    }

    private static string CreateDirectory(string prefix)
    {
        var directory = System.IO.Directory.CreateTempSubdirectory(prefix).FullName;
        if (ProcessRunner.IsRoot)
        {
            File.SetUnixFileMode(directory, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute);
            Check(ProcessRunner.RunAsync("chown", ["postgres", directory]).GetAwaiter().GetResult(), "chown");
        }
        return directory;
    }

    private async Task InitializeAsync(int maxConnections)
    {
        Check(await ProcessRunner.RunAsync(Bin("initdb"), ["-D", DataDirectory, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C"], asPostgres: true), "initdb");
        await File.AppendAllTextAsync(Path.Combine(DataDirectory, "postgresql.conf"), $"""

            port = {Port}
            listen_addresses = '127.0.0.1'
            unix_socket_directories = '{Directory}'
            max_connections = {maxConnections}
            fsync = off
            synchronous_commit = off
            full_page_writes = off
            shared_buffers = 64MB
            wal_level = replica
            max_wal_senders = 10
            hot_standby = on
            log_min_messages = warning
            """);
        await File.WriteAllTextAsync(Path.Combine(DataDirectory, "pg_hba.conf"), """
            local all all trust
            host all postgres 127.0.0.1/32 trust
            host replication postgres 127.0.0.1/32 trust
            host all scram_user 127.0.0.1/32 scram-sha-256
            host all md5_user 127.0.0.1/32 md5
            host all clear_user 127.0.0.1/32 password
            host all trust_user 127.0.0.1/32 trust
            host all all 127.0.0.1/32 scram-sha-256
            """);
        await StartProcessAsync();
        await using var connection = new NpgsqlConnection(ConnectionString());
        await connection.OpenAsync();
        string[] setup =
        [
            $"CREATE ROLE scram_user LOGIN PASSWORD '{Password}'",
            $"CREATE ROLE clear_user LOGIN PASSWORD '{Password}'",
            "CREATE ROLE trust_user LOGIN",
            $"CREATE ROLE {AppUser} LOGIN PASSWORD '{Password}'",
            $"SET password_encryption = 'md5'; CREATE ROLE md5_user LOGIN PASSWORD '{Password}'",
            $"CREATE DATABASE {AppDatabase} OWNER {AppUser}",
        ];
        foreach (var sql in setup)
        {
            await using var command = new NpgsqlCommand(sql, connection);
            await command.ExecuteNonQueryAsync();
        }
    }

    /// <summary>
    /// Turns TLS on (<c>ssl = on</c>, reloaded) with this certificate and key, copied into the data
    /// directory with the permissions PostgreSQL demands; with <paramref name="refuseCleartext"/>,
    /// TCP logins without TLS are rejected by pg_hba.
    /// </summary>
    public async Task EnableTlsAsync(string certificatePath, string keyPath, bool refuseCleartext = false)
    {
        var certificate = Path.Combine(DataDirectory, "server.crt");
        var key = Path.Combine(DataDirectory, "server.key");
        File.Copy(certificatePath, certificate, overwrite: true);
        File.Copy(keyPath, key, overwrite: true);
        File.SetUnixFileMode(key, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        if (ProcessRunner.IsRoot)
            Check(await ProcessRunner.RunAsync("chown", ["postgres", certificate, key]), "chown");
        await File.AppendAllTextAsync(Path.Combine(DataDirectory, "postgresql.conf"), "\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
        if (refuseCleartext)
        {
            // TCP logins only over TLS (local socket logins, the fixture's own, are unaffected).
            var hba = Path.Combine(DataDirectory, "pg_hba.conf");
            await File.WriteAllTextAsync(hba, "hostnossl all all 127.0.0.1/32 reject\n" + await File.ReadAllTextAsync(hba));
        }
        await ExecuteAsync("SELECT pg_reload_conf()");
        // The postmaster applies the reload asynchronously: wait until a new session sees it.
        for (var i = 0; i < 100 && !Equals(await ScalarAsync("SHOW ssl"), "on"); i++)
            await Task.Delay(50);
    }

    /// <summary>A streaming replica of this server (<c>pg_basebackup -R -c fast</c>), started.</summary>
    public async Task<PostgresServer> StartReplicaAsync()
    {
        var directory = CreateDirectory("mproxy-pg-replica-");
        var replica = new PostgresServer(directory, FreePort.Next(), isReplica: true);
        Check(await ProcessRunner.RunAsync(Bin("pg_basebackup"),
            ["-h", "127.0.0.1", "-p", Port.ToString(System.Globalization.CultureInfo.InvariantCulture), "-U", "postgres", "-D", replica.DataDirectory, "-R", "-c", "fast", "-X", "stream"],
            asPostgres: true, timeout: TimeSpan.FromMinutes(2)), "pg_basebackup");
        await File.AppendAllTextAsync(Path.Combine(replica.DataDirectory, "postgresql.conf"), $"""

            port = {replica.Port}
            unix_socket_directories = '{directory}'
            """);
        await replica.StartProcessAsync();
        return replica;
    }

    public async Task StartProcessAsync()
    {
        Check(await ProcessRunner.RunAsync(Bin("pg_ctl"), ["-D", DataDirectory, "-l", Path.Combine(Directory, "postgres.log"), "-w", "-t", "60", "start"], asPostgres: true), "pg_ctl start");
        IsRunning = true;
    }

    /// <summary>Stops the server: <c>fast</c> lets it shut down cleanly, <c>immediate</c> is a crash.</summary>
    public async Task StopProcessAsync(string mode = "fast")
    {
        if (!IsRunning)
            return;
        IsRunning = false;
        await ProcessRunner.RunAsync(Bin("pg_ctl"), ["-D", DataDirectory, "-m", mode, "-w", "stop"], asPostgres: true);
    }

    public async Task PromoteAsync() =>
        Check(await ProcessRunner.RunAsync(Bin("pg_ctl"), ["-D", DataDirectory, "-w", "promote"], asPostgres: true), "pg_ctl promote");

    /// <summary>Runs SQL as the superuser and returns the first column of the first row, if any.</summary>
    public async Task<object?> ScalarAsync(string sql, string database = "postgres")
    {
        await using var connection = new NpgsqlConnection(ConnectionString(database: database));
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        var value = await command.ExecuteScalarAsync();
        return value is DBNull ? null : value;
    }

    public Task ExecuteAsync(string sql, string database = "postgres") => ScalarAsync(sql, database);

    public string ReadLog() => File.Exists(Path.Combine(Directory, "postgres.log")) ? File.ReadAllText(Path.Combine(Directory, "postgres.log")) : "";

    public async ValueTask DisposeAsync()
    {
        await StopProcessAsync("immediate");
        try
        {
            System.IO.Directory.Delete(Directory, recursive: true);
        }
        catch (IOException)
        {
            // a straggling process still has files open; the temp directory is reclaimed later
        }
    }

    private static void Check(ProcessResult result, string what)
    {
        if (result.ExitCode != 0)
            throw new InvalidOperationException($"{what} failed ({result.ExitCode}):\n{result.Output}");
    }
}
