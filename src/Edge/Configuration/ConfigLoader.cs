using System.Globalization;
using System.Net;
using MProxy.Edge.Protocols.Postgres.Auth;
using YamlDotNet.Core;
using YamlDotNet.Serialization;
using YamlDotNet.Serialization.NamingConventions;

namespace MProxy.Edge.Configuration;

/// <summary>Reads the YAML file, applies command-line overrides and validates into an <see cref="EdgeConfig"/>.</summary>
public static class ConfigLoader
{
    public const int DefaultPostgresPort = 5432;
    public const int DefaultMySqlPort = 3306;

    /// <summary>Where the MySQL listener is when a MySQL database is configured and <c>listen.mysql</c> is not set.</summary>
    public const string DefaultMySqlListen = "127.0.0.1:6033";

    public static EdgeConfig Load(CommandLineOverrides overrides)
    {
        RawConfig raw = new();
        if (overrides.ConfigFile is { } path)
        {
            if (!File.Exists(path))
                throw new ConfigException("--config", $"file '{path}' does not exist");
            raw = Parse(File.ReadAllText(path), path);
        }
        Apply(raw, overrides);
        return Validate(raw);
    }

    public static EdgeConfig LoadYaml(string yaml) => Validate(Parse(yaml, "config"));

    internal static RawConfig Parse(string yaml, string source)
    {
        var deserializer = new DeserializerBuilder()
            .WithNamingConvention(CamelCaseNamingConvention.Instance)
            .Build();
        try
        {
            return deserializer.Deserialize<RawConfig?>(yaml) ?? new RawConfig();
        }
        catch (YamlException e)
        {
            var message = e.InnerException?.Message ?? e.Message;
            // YamlDotNet reports unknown keys as "Property 'x' not found on type '...RawPool'".
            var quote = message.IndexOf("Property '", StringComparison.Ordinal);
            if (quote >= 0)
            {
                var start = quote + "Property '".Length;
                var end = message.IndexOf('\'', start);
                message = $"unknown key '{message[start..end]}'";
            }
            throw new ConfigException($"{source}:{e.Start.Line}:{e.Start.Column}", message);
        }
    }

    private static void Apply(RawConfig raw, CommandLineOverrides o)
    {
        if (o.Listen is not null)
            (raw.Listen ??= new()).Postgres = o.Listen;
        if (o.AdminListen is not null)
            (raw.Listen ??= new()).Admin = o.AdminListen;
        if (o.PoolSize is not null)
            (raw.Pool ??= new()).Size = o.PoolSize;
        if (o.PoolMode is not null)
            (raw.Pool ??= new()).Mode = o.PoolMode;
        if (o.AuthMethod is not null)
            (raw.Auth ??= new()).Method = o.AuthMethod;
        if (o.TlsCertificate is not null)
            (raw.Tls ??= new()).Certificate = o.TlsCertificate;
        if (o.TlsKey is not null)
            (raw.Tls ??= new()).Key = o.TlsKey;
        if (o.Transport is not null)
            (raw.Network ??= new()).Transport = o.Transport;
        if (o.EpollLoops is not null)
            (raw.Network ??= new()).EpollLoops = o.EpollLoops;
        if (o.EpollParking is not null)
            (raw.Network ??= new()).EpollParking = o.EpollParking;
        if (o.Primary is not null)
        {
            var url = ParsePostgresUrl("--primary", o.Primary);
            raw.Databases ??= [];
            raw.Databases.RemoveAll(d => d.Name == url.Database);
            raw.Databases.Add(new RawDatabase { Name = url.Database, Primary = url.HostPort.ToString() });
            if (url.User is not null)
            {
                raw.Users ??= [];
                raw.Users.RemoveAll(u => u.Name == url.User);
                raw.Users.Add(new RawUser { Name = url.User, Password = url.Password });
            }
        }
    }

    private static NetworkConfig ValidateNetwork(RawNetwork? raw)
    {
        // The edge's own epoll loops where the platform has them (measured: less CPU per transaction and
        // more TPS than the runtime's socket engine with one loop per core, README "Configuration").
        var transport = (raw?.Transport ?? (Networking.Epoll.EpollNative.IsSupported ? "epoll" : "sockets")).ToLowerInvariant() switch
        {
            "sockets" => NetworkTransport.Sockets,
            "epoll" => NetworkTransport.Epoll,
            var other => throw new ConfigException("network.transport", $"'{other}' is not one of sockets, epoll"),
        };
        if (transport == NetworkTransport.Epoll && !Networking.Epoll.EpollNative.IsSupported)
            throw new ConfigException("network.transport", "'epoll' needs Linux on x86-64 or arm64; use 'sockets' here");
        return new NetworkConfig(transport, Range("network.epollLoops", raw?.EpollLoops ?? Math.Min(Environment.ProcessorCount, 64), 1, 64), raw?.EpollParking ?? true);
    }

    internal static EdgeConfig Validate(RawConfig raw)
    {
        var listen = new ListenConfig(
            Postgres: ParseEndPoint("listen.postgres", raw.Listen?.Postgres ?? "127.0.0.1:6432"),
            Admin: raw.Listen?.Admin is { Length: > 0 } admin ? ParseEndPoint("listen.admin", admin) : null);

        var clients = new ClientLimits(
            MaxConnections: Range("clients.maxConnections", raw.Clients?.MaxConnections ?? 10_000, 1, 1_000_000),
            MaxMessageBytes: Range("clients.maxMessageBytes", raw.Clients?.MaxMessageBytes ?? 256 * 1024 * 1024, 1024, int.MaxValue - 16),
            LoginTimeout: Ms("clients.loginTimeoutMs", raw.Clients?.LoginTimeoutMs ?? 15_000, 100),
            MaxPreparedStatements: Range("clients.maxPreparedStatements", raw.Clients?.MaxPreparedStatements ?? 10_000, 1, 10_000_000));

        var auth = new AuthConfig((raw.Auth?.Method ?? "scram-sha-256").ToLowerInvariant() switch
        {
            "scram-sha-256" or "scram" => AuthMethod.ScramSha256,
            "md5" => AuthMethod.Md5,
            "trust" => AuthMethod.Trust,
            var other => throw new ConfigException("auth.method", $"'{other}' is not one of scram-sha-256, md5, trust"),
        });

        var users = new List<UserConfig>();
        for (var i = 0; i < (raw.Users?.Count ?? 0); i++)
            users.Add(ValidateUser($"users[{i}]", raw.Users![i], auth.Method));
        for (var i = 0; i < users.Count; i++)
            for (var j = 0; j < i; j++)
                if (users[i].Name == users[j].Name)
                    throw new ConfigException($"users[{i}].name", $"user '{users[i].Name}' is defined twice");

        var poolDefaults = ValidatePool("pool", raw.Pool, new PoolConfig());
        var databases = new List<DatabaseConfig>();
        for (var i = 0; i < (raw.Databases?.Count ?? 0); i++)
        {
            var key = $"databases[{i}]";
            var d = raw.Databases![i];
            if (string.IsNullOrWhiteSpace(d.Name))
                throw new ConfigException($"{key}.name", "is required");
            if (d.Name == "mproxy")
                throw new ConfigException($"{key}.name", "'mproxy' is reserved for the admin console");
            if (databases.Exists(x => x.Name == d.Name))
                throw new ConfigException($"{key}.name", $"database '{d.Name}' is defined twice");
            var protocol = ParseProtocol($"{key}.protocol", d.Protocol);
            if (d.AllowLoadDataLocal == true && protocol != DatabaseProtocol.MySql)
                throw new ConfigException($"{key}.allowLoadDataLocal", "is for MySQL databases (protocol: mysql)");
            if (string.IsNullOrWhiteSpace(d.Primary) && d.Backends is null)
                throw new ConfigException($"{key}.primary", "is required (host:port), or a 'backends' section listing the hosts");
            var port = protocol == DatabaseProtocol.MySql ? DefaultMySqlPort : DefaultPostgresPort;
            HostPort? primary = string.IsNullOrWhiteSpace(d.Primary) ? null : ParseHostPort($"{key}.primary", d.Primary, port);
            var serverDatabase = string.IsNullOrWhiteSpace(d.ServerDatabase) ? d.Name : d.ServerDatabase;
            var backends = MProxy.Edge.Backends.BackendsConfigValidator.Validate($"{key}.backends", d.Backends, new MProxy.Edge.Backends.BackendsDefaults(
                primary,
                d.ServerUser is null ? null : new MProxy.Edge.Backends.MonitorCredentials(d.ServerUser, d.ServerPassword, serverDatabase),
                d.Name,
                port,
                // A MySQL monitor logs in without selecting a database unless one is given.
                protocol == DatabaseProtocol.MySql ? "" : "postgres"));
            databases.Add(new DatabaseConfig
            {
                Name = d.Name,
                ServerDatabase = serverDatabase,
                Primary = primary ?? backends.Hosts[0],
                Protocol = protocol,
                AllowLoadDataLocal = d.AllowLoadDataLocal ?? false,
                ServerTls = ServerTlsConfig.Validate($"{key}.serverTls", d.ServerTls, protocol),
                ServerUser = d.ServerUser,
                ServerPassword = d.ServerPassword,
                Pool = ValidatePool($"{key}.pool", d.Pool, poolDefaults),
                // A single host without anyone to monitor it: no health checks, everything to it.
                Backends = backends.Monitor is null ? null : backends,
            });
        }
        if (databases.Count == 0)
            throw new ConfigException("databases", "no database is configured: add one under 'databases' or pass --primary postgres://user:password@host:port/database");

        listen = WithMySqlListener(listen, raw.Listen?.Mysql, databases);
        return new EdgeConfig
        {
            Listen = listen,
            Clients = clients,
            Auth = auth,
            Users = users,
            Databases = databases,
            ShutdownTimeout = Ms("shutdownTimeoutMs", raw.ShutdownTimeoutMs ?? 30_000, 0),
            Qos = MProxy.Edge.Qos.QosConfigValidator.Validate(raw.Qos),
            Policy = ValidatePolicy(raw.Policy),
            Telemetry = MProxy.Edge.Telemetry.TelemetryConfigValidator.Validate(raw.Telemetry),
            Reload = MProxy.Edge.Hosting.ReloadSettings.Validate(raw.Reload),
            Tls = TlsConfig.Validate(raw.Tls),
            Network = ValidateNetwork(raw.Network),
        };
    }

    private static DatabaseProtocol ParseProtocol(string key, string? text) => (text ?? "postgres").ToLowerInvariant() switch
    {
        "postgres" or "postgresql" => DatabaseProtocol.Postgres,
        "mysql" or "mariadb" => DatabaseProtocol.MySql,
        var other => throw new ConfigException(key, $"'{other}' is not one of postgres, mysql"),
    };

    /// <summary><c>listen.mysql</c>: as given ("" or "off" turns it off), else the default address when a MySQL database is configured.</summary>
    private static ListenConfig WithMySqlListener(ListenConfig listen, string? text, List<DatabaseConfig> databases)
    {
        if (text is { Length: > 0 } and not "off")
            return listen with { MySql = ParseEndPoint("listen.mysql", text) };
        if (text is null && databases.Exists(d => d.Protocol == DatabaseProtocol.MySql))
            return listen with { MySql = ParseEndPoint("listen.mysql", DefaultMySqlListen) };
        return listen;
    }

    private static PolicySettings ValidatePolicy(RawPolicy? p)
    {
        if (p is null)
            return new PolicySettings();
        var silos = new List<Uri>();
        for (var i = 0; i < (p.Silos?.Count ?? 0); i++)
        {
            if (!Uri.TryCreate(p.Silos![i], UriKind.Absolute, out var uri) || uri.Scheme is not ("http" or "https"))
                throw new ConfigException($"policy.silos[{i}]", $"'{p.Silos[i]}' is not an http:// address of a silo's edge API");
            silos.Add(uri);
        }
        if (p.File is not null && silos.Count > 0)
            throw new ConfigException("policy.file", "a policy file is for embedded mode; with silos, the silos hold the policy");
        if (p.File is not null && !File.Exists(p.File))
            throw new ConfigException("policy.file", $"file '{p.File}' does not exist");
        var defaults = new PolicySettings();
        return new PolicySettings
        {
            Silos = silos,
            File = p.File,
            EdgeId = string.IsNullOrWhiteSpace(p.EdgeId) ? null : p.EdgeId,
            CallTimeout = p.CallTimeoutMs is { } call ? Ms("policy.callTimeoutMs", call, 10) : defaults.CallTimeout,
            BackoffBase = p.BackoffBaseMs is { } b ? Ms("policy.backoffBaseMs", b, 1) : defaults.BackoffBase,
            BackoffMax = p.BackoffMaxMs is { } m ? Ms("policy.backoffMaxMs", m, 1) : defaults.BackoffMax,
            LocalShareFloorRuPerSecond = p.LocalShareFloorRuPerSecond is { } floor
                ? floor >= 0 && double.IsFinite(floor) ? floor : throw new ConfigException("policy.localShareFloorRuPerSecond", "must be a non-negative number")
                : defaults.LocalShareFloorRuPerSecond,
            MaxFingerprintsPerExchange = Range("policy.maxFingerprintsPerExchange", p.MaxFingerprintsPerExchange ?? defaults.MaxFingerprintsPerExchange, 0, 100_000),
        };
    }

    private static UserConfig ValidateUser(string key, RawUser u, AuthMethod method)
    {
        if (string.IsNullOrWhiteSpace(u.Name))
            throw new ConfigException($"{key}.name", "is required");
        if (u.ScramVerifier is not null && !ScramVerifier.TryParse(u.ScramVerifier, out _))
            throw new ConfigException($"{key}.scramVerifier", "is not of the form SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>");
        if (u.Md5 is not null && !Md5Password.IsHash(u.Md5))
            throw new ConfigException($"{key}.md5", "is not of the form md5<32 hex digits>");
        if (method == AuthMethod.ScramSha256 && u.Password is null && u.ScramVerifier is null)
            throw new ConfigException($"{key}", $"user '{u.Name}' needs 'password' or 'scramVerifier' for scram-sha-256 authentication");
        if (method == AuthMethod.Md5 && u.Password is null && u.Md5 is null)
            throw new ConfigException($"{key}", $"user '{u.Name}' needs 'password' or 'md5' for md5 authentication");
        return new UserConfig
        {
            Name = u.Name,
            Password = u.Password,
            ScramVerifier = u.ScramVerifier,
            Md5Hash = u.Md5,
            ServerPassword = u.ServerPassword,
            Admin = u.Admin ?? false,
        };
    }

    private static PoolConfig ValidatePool(string key, RawPool? p, PoolConfig defaults)
    {
        if (p is null)
            return defaults;
        var mode = p.Mode is null ? defaults.Mode : p.Mode.ToLowerInvariant() switch
        {
            "transaction" => PoolMode.Transaction,
            "session" => PoolMode.Session,
            var other => throw new ConfigException($"{key}.mode", $"'{other}' is not one of transaction, session"),
        };
        var size = Range($"{key}.size", p.Size ?? defaults.Size, 1, 100_000);
        var minSize = Range($"{key}.minSize", p.MinSize ?? defaults.MinSize, 0, size);
        return defaults with
        {
            Mode = mode,
            Size = size,
            MinSize = minSize,
            WaitTimeout = p.WaitTimeoutMs is { } wait ? Ms($"{key}.waitTimeoutMs", wait, 0) : defaults.WaitTimeout,
            ConnectTimeout = p.ConnectTimeoutMs is { } connect ? Ms($"{key}.connectTimeoutMs", connect, 1) : defaults.ConnectTimeout,
            IdleTimeout = p.IdleTimeoutMs is { } idle ? Ms($"{key}.idleTimeoutMs", idle, 0) : defaults.IdleTimeout,
            Lifetime = p.LifetimeMs is { } lifetime ? Ms($"{key}.lifetimeMs", lifetime, 0) : defaults.Lifetime,
            CheckAfterIdle = p.CheckAfterIdleMs is { } check ? Ms($"{key}.checkAfterIdleMs", check, 0) : defaults.CheckAfterIdle,
            CheckQuery = p.CheckQuery ?? defaults.CheckQuery,
            ResetQuery = p.ResetQuery ?? defaults.ResetQuery,
            MaxPreparedStatements = Range($"{key}.maxPreparedStatements", p.MaxPreparedStatements ?? defaults.MaxPreparedStatements, 0, 1_000_000),
            DeferBegin = p.DeferBegin ?? defaults.DeferBegin,
        };
    }

    private static int Range(string key, int value, int min, int max) =>
        value < min || value > max ? throw new ConfigException(key, $"{value} is outside {min}..{max}") : value;

    /// <summary>A duration in milliseconds; 0 means "never" where the key allows it.</summary>
    private static TimeSpan Ms(string key, int value, int min) =>
        value < min ? throw new ConfigException(key, $"{value} ms is below the minimum of {min} ms") : TimeSpan.FromMilliseconds(value);

    public static IPEndPoint ParseEndPoint(string key, string text)
    {
        var hp = ParseHostPort(key, text, defaultPort: -1);
        if (hp.Host is "localhost")
            return new IPEndPoint(IPAddress.Loopback, hp.Port);
        if (hp.Host is "*" or "")
            return new IPEndPoint(IPAddress.Any, hp.Port);
        if (!IPAddress.TryParse(hp.Host, out var address))
            throw new ConfigException(key, $"'{hp.Host}' is not an IP address (listen addresses must be literal addresses, '*' or 'localhost')");
        return new IPEndPoint(address, hp.Port);
    }

    public static HostPort ParseHostPort(string key, string text, int defaultPort)
    {
        text = text.Trim();
        string host;
        string? portText = null;
        if (text.StartsWith('['))
        {
            var close = text.IndexOf(']', StringComparison.Ordinal);
            if (close < 0)
                throw new ConfigException(key, $"'{text}' has an unclosed '['");
            host = text[1..close];
            if (close + 1 < text.Length)
            {
                if (text[close + 1] != ':')
                    throw new ConfigException(key, $"'{text}' is not host:port");
                portText = text[(close + 2)..];
            }
        }
        else
        {
            var colon = text.LastIndexOf(':');
            host = colon < 0 ? text : text[..colon];
            portText = colon < 0 ? null : text[(colon + 1)..];
        }
        int port;
        if (portText is null)
        {
            if (defaultPort < 0)
                throw new ConfigException(key, $"'{text}' has no port (expected host:port)");
            port = defaultPort;
        }
        else if (!int.TryParse(portText, NumberStyles.None, CultureInfo.InvariantCulture, out port) || port is < 0 or > 65535)
        {
            throw new ConfigException(key, $"'{portText}' is not a port number");
        }
        return new HostPort(host, port);
    }

    public sealed record PostgresUrl(HostPort HostPort, string Database, string? User, string? Password);

    public static PostgresUrl ParsePostgresUrl(string key, string text)
    {
        if (!Uri.TryCreate(text, UriKind.Absolute, out var uri) || uri.Scheme is not ("postgres" or "postgresql"))
            throw new ConfigException(key, "expected postgres://user:password@host:port/database");
        var database = Uri.UnescapeDataString(uri.AbsolutePath.TrimStart('/'));
        string? user = null, password = null;
        if (uri.UserInfo.Length > 0)
        {
            var colon = uri.UserInfo.IndexOf(':', StringComparison.Ordinal);
            user = Uri.UnescapeDataString(colon < 0 ? uri.UserInfo : uri.UserInfo[..colon]);
            password = colon < 0 ? null : Uri.UnescapeDataString(uri.UserInfo[(colon + 1)..]);
        }
        if (database.Length == 0)
            database = user ?? throw new ConfigException(key, "names no database and no user");
        var host = uri.Host.Trim('[', ']');
        return new PostgresUrl(new HostPort(host, uri.Port < 0 ? DefaultPostgresPort : uri.Port), database, user, password);
    }
}
