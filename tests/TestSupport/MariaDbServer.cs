using System.Diagnostics;
using System.Globalization;

namespace MProxy.TestSupport;

/// <summary>
/// A real MariaDB server from Debian's packages, in a temporary directory on a free loopback port,
/// started and stopped by tests. As root, the server runs as the <c>mysql</c> user.
/// </summary>
/// <remarks>
/// Logins created by <see cref="StartAsync"/>: <c>root</c> over the Unix socket, <c>app</c>
/// (mysql_native_password, password <see cref="Password"/>) with all rights on database <c>app</c>,
/// and <c>other</c> (same password) with all rights on <c>app</c> and <c>other</c>.
/// </remarks>
public sealed class MariaDbServer : IAsyncDisposable
{
    public const string Password = "s3cret-pw";
    public const string AppUser = "app";
    public const string AppDatabase = "app";
    public const string OtherUser = "other";
    public const string OtherDatabase = "other";

    private Process? _process;

    private MariaDbServer(string directory, int port)
    {
        Directory = directory;
        Port = port;
    }

    public string Directory { get; }

    public int Port { get; }

    public string Socket => Path.Combine(Directory, "mysqld.sock");

    private string DataDirectory => Path.Combine(Directory, "data");

    /// <summary>
    /// The server's own temporary directory. With the default (<c>/tmp</c>) two servers bootstrapping at
    /// once could trip over each other's temporary tables: mariadb-install-db failed with "Could not
    /// remove temporary table: '/tmp/#sql-temptable-…'" and "Unknown table 'mysql.tmp_user_sys'".
    /// </summary>
    private string TempDirectory => Path.Combine(Directory, "tmp");

    /// <summary>Starts a server; <paramref name="extraArguments"/> are added to <c>mariadbd</c>'s (e.g. <c>--server-id=2</c>, <c>--log-bin</c>).</summary>
    public static async Task<MariaDbServer> StartAsync(int maxConnections = 300, IReadOnlyList<string>? extraArguments = null)
    {
        var directory = System.IO.Directory.CreateTempSubdirectory("mproxy-mariadb-").FullName;
        if (ProcessRunner.IsRoot)
        {
            File.SetUnixFileMode(directory, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute);
            Check(await ProcessRunner.RunAsync("chown", ["mysql", directory]), "chown");
        }
        var server = new MariaDbServer(directory, FreePort.Next());
        try
        {
            await server.InitializeAsync(maxConnections, extraArguments ?? []);
        }
        catch
        {
            await server.DisposeAsync(); // stops what started and removes the directory
            throw;
        }
        return server;
    }

    private static string Tool(string name)
    {
        foreach (var dir in new[] { "/usr/bin", "/usr/sbin", "/usr/local/bin" })
            if (File.Exists(Path.Combine(dir, name)))
                return Path.Combine(dir, name);
        throw new InvalidOperationException($"{name} not found: run scripts/test.sh or apt-get install mariadb-server mariadb-client");
    }

    private async Task InitializeAsync(int maxConnections, IReadOnlyList<string> extraArguments)
    {
        System.IO.Directory.CreateDirectory(TempDirectory);
        if (ProcessRunner.IsRoot)
            Check(await ProcessRunner.RunAsync("chown", ["mysql", TempDirectory]), "chown");
        List<string> install = ["--no-defaults", $"--datadir={DataDirectory}", $"--tmpdir={TempDirectory}", "--auth-root-authentication-method=socket", "--skip-test-db"];
        if (ProcessRunner.IsRoot)
            install.Add("--user=mysql");
        Check(await ProcessRunner.RunAsync(Tool("mariadb-install-db"), install, timeout: TimeSpan.FromMinutes(2)), "mariadb-install-db");

        var info = new ProcessStartInfo(Tool("mariadbd")) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var argument in new[]
        {
            "--no-defaults", $"--datadir={DataDirectory}", $"--tmpdir={TempDirectory}", $"--port={Port.ToString(CultureInfo.InvariantCulture)}", "--bind-address=127.0.0.1",
            $"--socket={Socket}", $"--pid-file={Path.Combine(Directory, "mysqld.pid")}", $"--log-error={Path.Combine(Directory, "error.log")}",
            $"--max-connections={maxConnections.ToString(CultureInfo.InvariantCulture)}", "--character-set-server=utf8mb4", "--collation-server=utf8mb4_general_ci",
            "--innodb-buffer-pool-size=64M", "--innodb-flush-log-at-trx-commit=0", "--skip-name-resolve", "--max-allowed-packet=64M",
            // MySql.Data 8.0.16 reads SHOW COLLATION and cannot take MariaDB 10.10+'s NULL ids (MariaDB
            // hides them from Connector/NET by its connection attributes, which the edge does not relay).
            "--old-mode=UTF8_IS_UTF8MB3,NO_NULL_COLLATION_IDS",
        })
        {
            info.ArgumentList.Add(argument);
        }
        foreach (var argument in extraArguments)
            info.ArgumentList.Add(argument);
        if (ProcessRunner.IsRoot)
            info.ArgumentList.Add("--user=mysql");
        _process = Process.Start(info) ?? throw new InvalidOperationException("could not start mariadbd");
        _process.OutputDataReceived += (_, _) => { };
        _process.ErrorDataReceived += (_, _) => { };
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();

        // mariadb-admin retries until the server answers (or gives up).
        var ping = await ProcessRunner.RunAsync(Tool("mariadb-admin"), ["--no-defaults", $"--socket={Socket}", "-uroot", "--wait=60", "--connect-timeout=2", "ping"], timeout: TimeSpan.FromMinutes(2));
        if (ping.ExitCode != 0)
            throw new InvalidOperationException($"MariaDB did not start:\n{ping.Output}\n{ReadLog()}");

        await ExecuteAsync($"""
            CREATE USER '{AppUser}'@'%' IDENTIFIED VIA mysql_native_password USING PASSWORD('{Password}');
            CREATE USER '{OtherUser}'@'%' IDENTIFIED VIA mysql_native_password USING PASSWORD('{Password}');
            CREATE DATABASE {AppDatabase} CHARACTER SET utf8mb4;
            CREATE DATABASE {OtherDatabase} CHARACTER SET utf8mb4;
            GRANT ALL ON {AppDatabase}.* TO '{AppUser}'@'%';
            GRANT ALL ON {AppDatabase}.* TO '{OtherUser}'@'%';
            GRANT ALL ON {OtherDatabase}.* TO '{OtherUser}'@'%';
            GRANT PROCESS, CONNECTION ADMIN ON *.* TO '{AppUser}'@'%';
            """);
    }

    /// <summary>Runs SQL as root over the Unix socket with the <c>mariadb</c> client; returns its tab-separated output without headers.</summary>
    public async Task<string> ExecuteAsync(string sql, string? database = null)
    {
        List<string> arguments = ["--no-defaults", $"--socket={Socket}", "-uroot", "--batch", "--skip-column-names"];
        if (database is not null)
            arguments.Add(database);
        var result = await ProcessRunner.RunAsync(Tool("mariadb"), arguments, stdin: sql);
        Check(result, "mariadb");
        return result.Stdout.TrimEnd('\n');
    }

    /// <summary>Runs the <c>mariadb</c> command-line client over TCP against <paramref name="port"/> (the edge, or this server).</summary>
    public static Task<ProcessResult> RunClientAsync(int port, string user, string? password, string database, string sql, params string[] extra)
    {
        List<string> arguments = ["--no-defaults", "--protocol=TCP", "-h127.0.0.1", $"-P{port.ToString(CultureInfo.InvariantCulture)}", $"-u{user}", "--batch", "--skip-column-names", "--skip-ssl"];
        if (password is not null)
            arguments.Add($"-p{password}");
        arguments.AddRange(extra);
        arguments.Add(database);
        return ProcessRunner.RunAsync(Tool("mariadb"), arguments, stdin: sql);
    }

    public string ReadLog()
    {
        var path = Path.Combine(Directory, "error.log");
        return File.Exists(path) ? File.ReadAllText(path) : "";
    }

    /// <summary>Kills the server (as a crash would); <see cref="DisposeAsync"/> still removes its directory.</summary>
    public async Task KillAsync()
    {
        if (_process is { HasExited: false } process)
        {
            try
            {
                process.Kill(entireProcessTree: true);
                await process.WaitForExitAsync();
            }
            catch (InvalidOperationException)
            {
                // already gone
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (_process is { HasExited: false } process)
        {
            try
            {
                process.Kill(entireProcessTree: true);
                await process.WaitForExitAsync();
            }
            catch (InvalidOperationException)
            {
                // already gone
            }
        }
        _process?.Dispose();
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
