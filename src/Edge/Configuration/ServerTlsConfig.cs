using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace MProxy.Edge.Configuration;

/// <summary>How the edge uses TLS to a database's PostgreSQL servers (libpq's <c>sslmode</c> names).</summary>
public enum ServerTlsMode
{
    /// <summary>Cleartext (the default).</summary>
    Disable,

    /// <summary>TLS when the server offers it, else cleartext; the certificate is not checked.</summary>
    Prefer,

    /// <summary>TLS or no connection; the certificate is not checked (encryption without authentication).</summary>
    Require,

    /// <summary>TLS with the server's certificate chained to a trusted root and naming the host the edge connects to.</summary>
    VerifyFull,
}

/// <summary>
/// TLS to a database's servers (<c>databases[].serverTls</c>): the mode and, for
/// <c>verify-full</c>, the roots to trust instead of the system's (a PEM file).
/// </summary>
public sealed record ServerTlsConfig(ServerTlsMode Mode, string? RootCertificatePath = null, X509Certificate2Collection? Roots = null)
{
    public static readonly ServerTlsConfig Disabled = new(ServerTlsMode.Disable);

    /// <summary>The name the configuration uses for <see cref="Mode"/>.</summary>
    public string ModeName => Mode switch
    {
        ServerTlsMode.Prefer => "prefer",
        ServerTlsMode.Require => "require",
        ServerTlsMode.VerifyFull => "verify-full",
        _ => "disable",
    };

    /// <exception cref="ConfigException">an invalid mode, or a root certificate file that cannot be used.</exception>
    internal static ServerTlsConfig Validate(string key, RawServerTls? raw, DatabaseProtocol protocol)
    {
        if (raw is null)
            return Disabled;
        var mode = (raw.Mode ?? "disable").ToLowerInvariant() switch
        {
            "disable" => ServerTlsMode.Disable,
            "prefer" => ServerTlsMode.Prefer,
            "require" => ServerTlsMode.Require,
            "verify-full" => ServerTlsMode.VerifyFull,
            var other => throw new ConfigException($"{key}.mode", $"'{other}' is not one of disable, prefer, require, verify-full"),
        };
        if (mode != ServerTlsMode.Disable && protocol == DatabaseProtocol.MySql)
            throw new ConfigException($"{key}.mode", "TLS to MySQL servers is not supported yet (only disable)");
        if (raw.RootCertificate is null)
            return new ServerTlsConfig(mode);
        if (mode != ServerTlsMode.VerifyFull)
            throw new ConfigException($"{key}.rootCertificate", "is only used with mode: verify-full");
        if (!File.Exists(raw.RootCertificate))
            throw new ConfigException($"{key}.rootCertificate", $"file '{raw.RootCertificate}' does not exist");
        var roots = new X509Certificate2Collection();
        try
        {
            roots.ImportFromPemFile(raw.RootCertificate);
        }
        catch (CryptographicException e)
        {
            throw new ConfigException($"{key}.rootCertificate", $"cannot read '{raw.RootCertificate}': {e.Message}");
        }
        if (roots.Count == 0)
            throw new ConfigException($"{key}.rootCertificate", $"'{raw.RootCertificate}' holds no PEM certificate");
        return new ServerTlsConfig(mode, raw.RootCertificate, roots);
    }
}

/// <summary>The <c>databases[].serverTls</c> section as written.</summary>
internal sealed class RawServerTls
{
    public string? Mode { get; set; }
    public string? RootCertificate { get; set; }
}
