using System.Net;

namespace MProxy.Edge.Configuration;

/// <summary>
/// One immutable snapshot of the edge's configuration. A reload builds a new snapshot and swaps one
/// reference (<see cref="ConfigStore"/>); a query reads one snapshot from start to end.
/// </summary>
public sealed record EdgeConfig
{
    public required ListenConfig Listen { get; init; }
    public required ClientLimits Clients { get; init; }
    public required AuthConfig Auth { get; init; }
    public required IReadOnlyList<UserConfig> Users { get; init; }
    public required IReadOnlyList<DatabaseConfig> Databases { get; init; }
    public TimeSpan ShutdownTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Tenants, resource groups, budgets, priorities, CoDel and runaway rules (off when the file has no <c>qos:</c>).</summary>
    public MProxy.Edge.Qos.QosConfig Qos { get; init; } = MProxy.Edge.Qos.QosConfig.Disabled;

    /// <summary>Where the policy tier is: silos, or embedded in this process (the default).</summary>
    public PolicySettings Policy { get; init; } = new();

    /// <summary>Metrics, traces and their export (the <c>telemetry:</c> section).</summary>
    public MProxy.Edge.Telemetry.TelemetryConfig Telemetry { get; init; } = new();

    /// <summary>When the configuration is reloaded (the <c>reload:</c> section).</summary>
    public MProxy.Edge.Hosting.ReloadSettings Reload { get; init; } = new();

    /// <summary>TLS for clients of both listeners (the <c>tls:</c> section); null: off, SSLRequest is answered <c>N</c>.</summary>
    public TlsConfig? Tls { get; init; }

    /// <summary>How database connections (clients and servers) are read and written (the <c>network:</c> section; bound at start).</summary>
    public NetworkConfig Network { get; init; } = new();

    public UserConfig? FindUser(string name)
    {
        foreach (var user in Users)
            if (user.Name == name)
                return user;
        return null;
    }

    public DatabaseConfig? FindDatabase(string name)
    {
        foreach (var database in Databases)
            if (database.Name == name)
                return database;
        return null;
    }
}

/// <summary>
/// The policy tier this edge talks to: the silos at <see cref="Silos"/>, or — when there are none —
/// the same grains hosted in this process on the in-memory store (embedded mode).
/// </summary>
public sealed record PolicySettings
{
    public IReadOnlyList<Uri> Silos { get; init; } = [];

    /// <summary>Policy file for embedded mode (the silo's format); without one, tenant budgets come from <c>qos:</c>.</summary>
    public string? File { get; init; }

    /// <summary>This edge's name in the policy tier; default: host name, process id and a random suffix.</summary>
    public string? EdgeId { get; init; }

    public TimeSpan CallTimeout { get; init; } = TimeSpan.FromSeconds(2);
    public TimeSpan BackoffBase { get; init; } = TimeSpan.FromMilliseconds(500);
    public TimeSpan BackoffMax { get; init; } = TimeSpan.FromSeconds(10);
    public double LocalShareFloorRuPerSecond { get; init; } = 1;
    public int MaxFingerprintsPerExchange { get; init; } = 500;

    public bool Embedded => Silos.Count == 0;
}

/// <summary>Addresses the edge listens on; null means that listener is off.</summary>
public sealed record ListenConfig(IPEndPoint? Postgres, IPEndPoint? Admin)
{
    /// <summary>The MySQL protocol listener (<c>listen.mysql</c>); on by default at 127.0.0.1:6033 when a MySQL database is configured.</summary>
    public IPEndPoint? MySql { get; init; }
}

/// <summary>The transports of database connections: the runtime's sockets, or the edge's own epoll loops (Linux).</summary>
public enum NetworkTransport
{
    Sockets,
    Epoll,
}

/// <summary><c>network:</c> — how database connections (clients' and servers') are read and written.</summary>
/// <param name="Transport"><c>epoll</c> (the edge's own PgBouncer-style event loops; the file's default on Linux x86-64/arm64) or <c>sockets</c> (the runtime's socket engine; the default elsewhere, and of a configuration built in code).</param>
/// <param name="EpollLoops">Event-loop threads of the epoll transport (the file's default: one per core); connections are spread over them in turn.</param>
/// <param name="EpollParking">Whether the loops beyond the first park while the first can serve their sockets too (the file's default: yes; see <c>EpollLoopParking</c>).</param>
public sealed record NetworkConfig(NetworkTransport Transport = NetworkTransport.Sockets, int EpollLoops = 1, bool EpollParking = true);

/// <param name="MaxConnections">Client connections the edge accepts at once.</param>
/// <param name="MaxMessageBytes">Largest message a client may send.</param>
/// <param name="LoginTimeout">Time a client has to complete its login.</param>
/// <param name="MaxPreparedStatements">Named prepared statements one client may hold (beyond: an error, not unbounded memory).</param>
public sealed record ClientLimits(int MaxConnections, int MaxMessageBytes, TimeSpan LoginTimeout, int MaxPreparedStatements = 10_000);

public enum AuthMethod
{
    ScramSha256,
    Md5,
    Trust,
}

public sealed record AuthConfig(AuthMethod Method);

/// <summary>A client login. Secrets never appear in <see cref="ToString"/>.</summary>
public sealed record UserConfig
{
    public required string Name { get; init; }

    /// <summary>Plaintext password, if configured (enables SCRAM, md5 and server login).</summary>
    public string? Password { get; init; }

    /// <summary>Stored SCRAM verifier (<c>SCRAM-SHA-256$…</c>).</summary>
    public string? ScramVerifier { get; init; }

    /// <summary>Stored md5 hash (<c>md5…</c>).</summary>
    public string? Md5Hash { get; init; }

    /// <summary>Password the edge uses to log in to servers as this user; defaults to <see cref="Password"/>.</summary>
    public string? ServerPassword { get; init; }

    public bool Admin { get; init; }

    public override string ToString() => $"UserConfig {{ Name = {Name}, Admin = {Admin} }}";
}

public enum PoolMode
{
    Transaction,
    Session,
}

/// <summary>How one pool of server connections behaves.</summary>
public sealed record PoolConfig
{
    public PoolMode Mode { get; init; } = PoolMode.Transaction;
    public int Size { get; init; } = 20;
    public int MinSize { get; init; }
    public TimeSpan WaitTimeout { get; init; } = TimeSpan.FromSeconds(5);
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(5);
    public TimeSpan IdleTimeout { get; init; } = TimeSpan.FromMinutes(10);
    public TimeSpan Lifetime { get; init; } = TimeSpan.FromHours(1);

    /// <summary>A connection idle longer than this is checked with <see cref="CheckQuery"/> before reuse.</summary>
    public TimeSpan CheckAfterIdle { get; init; } = TimeSpan.FromSeconds(30);

    public string CheckQuery { get; init; } = "SELECT 1";

    /// <summary>Sent when a session-mode client leaves, so nothing of its session leaks.</summary>
    public string ResetQuery { get; init; } = "DISCARD ALL";

    /// <summary>
    /// Transaction mode: prepared statements the edge keeps on each server connection (least
    /// recently used closed beyond it), so that clients' named statements work on whichever
    /// connection they get; 0 passes statements through unvirtualized (as PgBouncer 1.18 does).
    /// </summary>
    public int MaxPreparedStatements { get; init; } = 512;

    /// <summary>
    /// Transaction mode (PostgreSQL): a client's plain BEGIN is answered by the edge and sent to the
    /// server ahead of the transaction's first statement, so a transaction holds its server
    /// connection one round trip less (and a client idle after BEGIN holds none).
    /// </summary>
    public bool DeferBegin { get; init; } = true;
}

/// <summary>A database clients can connect to, and where it lives.</summary>
public sealed record DatabaseConfig
{
    /// <summary>The name clients put in their startup message.</summary>
    public required string Name { get; init; }

    /// <summary>The database name on the server; defaults to <see cref="Name"/>.</summary>
    public required string ServerDatabase { get; init; }

    /// <summary>The configured primary (in discovery mode: the first host, until the monitor finds the primary).</summary>
    public required HostPort Primary { get; init; }

    /// <summary>
    /// The database's hosts, health checks and routing; null for a single host without monitoring
    /// (everything goes to <see cref="Primary"/>).
    /// </summary>
    public MProxy.Edge.Backends.BackendsConfig? Backends { get; init; }

    /// <summary>If set, every client of this database logs in to the server as this user.</summary>
    public string? ServerUser { get; init; }

    public string? ServerPassword { get; init; }

    public required PoolConfig Pool { get; init; }

    /// <summary>The wire protocol of the server, and so which listener serves this database.</summary>
    public DatabaseProtocol Protocol { get; init; } = DatabaseProtocol.Postgres;

    /// <summary>MySQL: let clients run LOAD DATA LOCAL INFILE (refused by default).</summary>
    public bool AllowLoadDataLocal { get; init; }

    /// <summary>TLS to this database's servers (<c>serverTls</c>); read at each connection, so a reload applies to new ones.</summary>
    public ServerTlsConfig ServerTls { get; init; } = ServerTlsConfig.Disabled;

    public override string ToString() => $"DatabaseConfig {{ Name = {Name}, ServerDatabase = {ServerDatabase}, Primary = {Primary}, ServerUser = {ServerUser} }}";
}

/// <summary>The wire protocol a database's servers speak (<c>databases[].protocol</c>).</summary>
public enum DatabaseProtocol
{
    Postgres,
    MySql,
}

/// <summary>A host name (or address) and port.</summary>
public readonly record struct HostPort(string Host, int Port)
{
    public override string ToString() => Host.Contains(':', StringComparison.Ordinal) ? $"[{Host}]:{Port}" : $"{Host}:{Port}";
}
