using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace MProxy.TestSupport;

/// <summary>A self-signed certificate for <c>localhost</c>/127.0.0.1 written as PEM files in a temporary directory.</summary>
public sealed class TestCertificate : IDisposable
{
    private readonly string _directory;

    private TestCertificate(string directory, string certificatePath, string keyPath, string thumbprint)
    {
        _directory = directory;
        CertificatePath = certificatePath;
        KeyPath = keyPath;
        Thumbprint = thumbprint;
    }

    public string CertificatePath { get; }

    public string KeyPath { get; }

    /// <summary>SHA-1 thumbprint, to check that a client saw this very certificate.</summary>
    public string Thumbprint { get; }

    public static TestCertificate Create(string subject = "CN=mproxy-test")
    {
        var directory = Directory.CreateTempSubdirectory("mproxy-tls-").FullName;
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest(subject, key, HashAlgorithmName.SHA256);
        var names = new SubjectAlternativeNameBuilder();
        names.AddDnsName("localhost");
        names.AddIpAddress(System.Net.IPAddress.Loopback);
        request.CertificateExtensions.Add(names.Build());
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1")], critical: false));
        using var certificate = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddDays(1));
        var certificatePath = Path.Combine(directory, "server.crt");
        var keyPath = Path.Combine(directory, "server.key");
        File.WriteAllText(certificatePath, certificate.ExportCertificatePem());
        File.WriteAllText(keyPath, key.ExportPkcs8PrivateKeyPem());
        return new TestCertificate(directory, certificatePath, keyPath, certificate.Thumbprint);
    }

    /// <summary>The <c>tls:</c> section for these files.</summary>
    public string Yaml(string mode = "allow") => $"""
        tls:
          certificate: {CertificatePath}
          key: {KeyPath}
          mode: {mode}
        """;

    public void Dispose()
    {
        try
        {
            Directory.Delete(_directory, recursive: true);
        }
        catch (IOException)
        {
            // best effort
        }
    }
}
