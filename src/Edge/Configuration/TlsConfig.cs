using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace MProxy.Edge.Configuration;

/// <summary>Whether clients may log in without TLS once the edge offers it.</summary>
public enum TlsMode
{
    /// <summary>TLS for the clients that ask for it (SSLRequest); the others log in in cleartext.</summary>
    Allow,

    /// <summary>Only TLS clients log in; a cleartext startup is refused (28000) before authentication.</summary>
    Require,
}

/// <summary>
/// TLS for client connections on both listeners, PostgreSQL and MySQL (the <c>tls:</c> section): the edge's certificate and key
/// (PEM files, read at start and at each reload — a reload is how a renewed certificate takes
/// effect) and whether cleartext clients are still accepted. Null in <see cref="EdgeConfig.Tls"/>
/// when the section is absent: SSLRequest is then answered <c>N</c> (MySQL: CLIENT_SSL is not offered).
/// </summary>
/// <param name="CertificatePath">PEM file: the edge's certificate, then any intermediate certificates.</param>
/// <param name="KeyPath">PEM file: the certificate's private key (PKCS#8, PKCS#1 or SEC1; not encrypted).</param>
/// <param name="Mode">Whether cleartext clients are refused.</param>
/// <param name="Certificate">The loaded certificate with its chain, handed to each handshake.</param>
public sealed record TlsConfig(string CertificatePath, string KeyPath, TlsMode Mode, SslStreamCertificateContext Certificate)
{
    /// <summary>The certificate's subject, as the edge logs it at start.</summary>
    public string Subject => Certificate.TargetCertificate.Subject;

    /// <summary>The options of one server-side handshake.</summary>
    public SslServerAuthenticationOptions ServerOptions() => new()
    {
        ServerCertificateContext = Certificate,
        ClientCertificateRequired = false,
        CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
    };

    /// <summary>Validates the <c>tls:</c> section and loads the certificate; null when TLS is off.</summary>
    /// <exception cref="ConfigException">a key is missing or invalid, or a file cannot be loaded.</exception>
    internal static TlsConfig? Validate(RawTls? raw)
    {
        if (raw is null || (raw.Certificate is null && raw.Key is null && raw.Mode is null))
            return null;
        if (string.IsNullOrWhiteSpace(raw.Certificate))
            throw new ConfigException("tls.certificate", "is required in the tls section (a PEM file with the edge's certificate)");
        if (string.IsNullOrWhiteSpace(raw.Key))
            throw new ConfigException("tls.key", "is required in the tls section (a PEM file with the certificate's private key)");
        var mode = (raw.Mode ?? "allow").ToLowerInvariant() switch
        {
            "allow" => TlsMode.Allow,
            "require" => TlsMode.Require,
            var other => throw new ConfigException("tls.mode", $"'{other}' is not one of allow, require"),
        };
        if (!File.Exists(raw.Certificate))
            throw new ConfigException("tls.certificate", $"file '{raw.Certificate}' does not exist");
        if (!File.Exists(raw.Key))
            throw new ConfigException("tls.key", $"file '{raw.Key}' does not exist");
        X509Certificate2 leaf;
        var chain = new X509Certificate2Collection();
        try
        {
            leaf = X509Certificate2.CreateFromPemFile(raw.Certificate, raw.Key);
            chain.ImportFromPemFile(raw.Certificate);
        }
        catch (CryptographicException e)
        {
            throw new ConfigException("tls.certificate", $"cannot load the certificate '{raw.Certificate}' with the key '{raw.Key}': {e.Message}");
        }
        if (!leaf.HasPrivateKey)
            throw new ConfigException("tls.key", $"'{raw.Key}' holds no private key for the certificate");
        // The file's first certificate is the edge's; the rest (if any) are sent as its chain.
        var intermediates = new X509Certificate2Collection();
        for (var i = 1; i < chain.Count; i++)
            intermediates.Add(chain[i]);
        var context = SslStreamCertificateContext.Create(leaf, intermediates, offline: true);
        return new TlsConfig(raw.Certificate, raw.Key, mode, context);
    }
}

/// <summary>The <c>tls:</c> section as written.</summary>
internal sealed class RawTls
{
    public string? Certificate { get; set; }
    public string? Key { get; set; }
    public string? Mode { get; set; }
}
