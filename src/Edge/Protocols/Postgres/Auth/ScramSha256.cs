using System.Globalization;
using System.Security.Cryptography;
using System.Text;

namespace MProxy.Edge.Protocols.Postgres.Auth;

/// <summary>
/// A SCRAM-SHA-256 verifier in PostgreSQL's stored form:
/// <c>SCRAM-SHA-256$&lt;iterations&gt;:&lt;salt&gt;$&lt;StoredKey&gt;:&lt;ServerKey&gt;</c> (RFC 5802, RFC 7677).
/// </summary>
internal sealed record ScramVerifier(int Iterations, byte[] Salt, byte[] StoredKey, byte[] ServerKey)
{
    public const string Prefix = "SCRAM-SHA-256$";
    public const int DefaultIterations = 4096;

    /// <summary>Derives a verifier from a plaintext password with a fresh random salt.</summary>
    public static ScramVerifier FromPassword(string password, int iterations = DefaultIterations, byte[]? salt = null)
    {
        salt ??= RandomNumberGenerator.GetBytes(16);
        var saltedPassword = ScramSha256.SaltPassword(password, salt, iterations);
        var clientKey = ScramSha256.Hmac(saltedPassword, "Client Key"u8);
        var serverKey = ScramSha256.Hmac(saltedPassword, "Server Key"u8);
        return new ScramVerifier(iterations, salt, SHA256.HashData(clientKey), serverKey);
    }

    public static bool TryParse(string text, out ScramVerifier? verifier)
    {
        verifier = null;
        if (!text.StartsWith(Prefix, StringComparison.Ordinal))
            return false;
        var parts = text[Prefix.Length..].Split('$');
        if (parts.Length != 2)
            return false;
        var head = parts[0].Split(':');
        var keys = parts[1].Split(':');
        if (head.Length != 2 || keys.Length != 2 || !int.TryParse(head[0], NumberStyles.None, CultureInfo.InvariantCulture, out var iterations) || iterations <= 0)
            return false;
        try
        {
            var storedKey = Convert.FromBase64String(keys[0]);
            var serverKey = Convert.FromBase64String(keys[1]);
            if (storedKey.Length != 32 || serverKey.Length != 32)
                return false;
            verifier = new ScramVerifier(iterations, Convert.FromBase64String(head[1]), storedKey, serverKey);
            return true;
        }
        catch (FormatException)
        {
            return false;
        }
    }

    public override string ToString() =>
        $"{Prefix}{Iterations}:{Convert.ToBase64String(Salt)}${Convert.ToBase64String(StoredKey)}:{Convert.ToBase64String(ServerKey)}";
}

/// <summary>SCRAM-SHA-256 primitives shared by the server and client exchanges.</summary>
internal static class ScramSha256
{
    public const string Mechanism = "SCRAM-SHA-256";

    public static byte[] SaltPassword(string password, byte[] salt, int iterations) =>
        Rfc2898DeriveBytes.Pbkdf2(Encoding.UTF8.GetBytes(password), salt, iterations, HashAlgorithmName.SHA256, 32);

    public static byte[] Hmac(byte[] key, ReadOnlySpan<byte> data) => HMACSHA256.HashData(key, data);

    public static byte[] Hmac(byte[] key, string data) => HMACSHA256.HashData(key, Encoding.UTF8.GetBytes(data));

    public static string NewNonce() => Convert.ToBase64String(RandomNumberGenerator.GetBytes(18));

    /// <summary>Parses <c>a=x,b=y</c> attributes; the value may itself contain '='.</summary>
    public static Dictionary<char, string> ParseAttributes(string message)
    {
        var result = new Dictionary<char, string>();
        foreach (var part in message.Split(','))
        {
            if (part.Length < 2 || part[1] != '=')
                throw new FormatException($"malformed SCRAM attribute '{part}'");
            result[part[0]] = part[2..];
        }
        return result;
    }

    public static byte[] Xor(byte[] a, byte[] b)
    {
        var result = new byte[a.Length];
        for (var i = 0; i < a.Length; i++)
            result[i] = (byte)(a[i] ^ b[i]);
        return result;
    }
}

/// <summary>
/// The server side of SCRAM-SHA-256 (the edge verifying a client). Channel binding
/// (SCRAM-SHA-256-PLUS) is not offered, even over TLS, so clients send the gs2 header <c>n,,</c> or
/// (over TLS, able to bind) <c>y,,</c>.
/// </summary>
internal sealed class ScramServerExchange(ScramVerifier verifier, string? serverNonce = null)
{
    private string? _clientFirstBare;
    private string? _serverFirst;
    private string? _nonce;
    private string? _gs2Header;

    /// <summary>Handles client-first-message; returns server-first-message.</summary>
    /// <exception cref="FormatException">the message is malformed.</exception>
    public string HandleClientFirst(string clientFirst)
    {
        // gs2-header: gs2-cbind-flag "," [authzid] ","
        var firstComma = clientFirst.IndexOf(',', StringComparison.Ordinal);
        var secondComma = firstComma < 0 ? -1 : clientFirst.IndexOf(',', firstComma + 1);
        if (firstComma != 1 || secondComma < 0)
            throw new FormatException("malformed SCRAM client-first-message");
        var flag = clientFirst[0];
        if (flag == 'p')
            throw new FormatException("channel binding was requested but the server did not offer SCRAM-SHA-256-PLUS");
        if (flag != 'n' && flag != 'y')
            throw new FormatException("malformed SCRAM gs2 header");
        _gs2Header = clientFirst[..(secondComma + 1)];
        _clientFirstBare = clientFirst[(secondComma + 1)..];
        var attributes = ScramSha256.ParseAttributes(_clientFirstBare);
        if (!attributes.TryGetValue('r', out var clientNonce) || clientNonce.Length == 0)
            throw new FormatException("SCRAM client-first-message has no nonce");
        _nonce = clientNonce + (serverNonce ?? ScramSha256.NewNonce());
        _serverFirst = $"r={_nonce},s={Convert.ToBase64String(verifier.Salt)},i={verifier.Iterations}";
        return _serverFirst;
    }

    /// <summary>Handles client-final-message; returns server-final-message, or null if the proof is wrong.</summary>
    /// <exception cref="FormatException">the message is malformed or out of order.</exception>
    public string? HandleClientFinal(string clientFinal)
    {
        if (_serverFirst is null || _clientFirstBare is null || _gs2Header is null)
            throw new FormatException("SCRAM client-final-message before client-first-message");
        var proofIndex = clientFinal.LastIndexOf(",p=", StringComparison.Ordinal);
        if (proofIndex < 0)
            throw new FormatException("SCRAM client-final-message has no proof");
        var withoutProof = clientFinal[..proofIndex];
        var attributes = ScramSha256.ParseAttributes(clientFinal);
        if (!attributes.TryGetValue('c', out var binding) || !attributes.TryGetValue('r', out var nonce) || !attributes.TryGetValue('p', out var proofText))
            throw new FormatException("SCRAM client-final-message is incomplete");
        if (binding != Convert.ToBase64String(Encoding.UTF8.GetBytes(_gs2Header)) || nonce != _nonce)
            return null;
        byte[] proof;
        try
        {
            proof = Convert.FromBase64String(proofText);
        }
        catch (FormatException)
        {
            return null;
        }
        if (proof.Length != 32)
            return null;
        var authMessage = $"{_clientFirstBare},{_serverFirst},{withoutProof}";
        var clientSignature = ScramSha256.Hmac(verifier.StoredKey, authMessage);
        var clientKey = ScramSha256.Xor(proof, clientSignature);
        if (!CryptographicOperations.FixedTimeEquals(SHA256.HashData(clientKey), verifier.StoredKey))
            return null;
        var serverSignature = ScramSha256.Hmac(verifier.ServerKey, authMessage);
        return "v=" + Convert.ToBase64String(serverSignature);
    }
}

/// <summary>The client side of SCRAM-SHA-256 (the edge authenticating to a server).</summary>
internal sealed class ScramClientExchange(string password, string? clientNonce = null)
{
    private readonly string _clientNonce = clientNonce ?? ScramSha256.NewNonce();
    private string? _clientFirstBare;
    private byte[]? _serverSignature;

    public string CreateClientFirst()
    {
        // PostgreSQL ignores the SCRAM user name (it uses the startup user); send it empty.
        _clientFirstBare = "n=,r=" + _clientNonce;
        return "n,," + _clientFirstBare;
    }

    /// <exception cref="FormatException">the server's message is malformed or its nonce does not extend ours.</exception>
    public string HandleServerFirst(string serverFirst)
    {
        var attributes = ScramSha256.ParseAttributes(serverFirst);
        if (!attributes.TryGetValue('r', out var nonce) || !attributes.TryGetValue('s', out var saltText) || !attributes.TryGetValue('i', out var iterationsText))
            throw new FormatException("SCRAM server-first-message is incomplete");
        if (!nonce.StartsWith(_clientNonce, StringComparison.Ordinal))
            throw new FormatException("SCRAM server nonce does not extend the client nonce");
        var iterations = int.Parse(iterationsText, NumberStyles.None, CultureInfo.InvariantCulture);
        var saltedPassword = ScramSha256.SaltPassword(password, Convert.FromBase64String(saltText), iterations);
        var clientKey = ScramSha256.Hmac(saltedPassword, "Client Key"u8);
        var storedKey = SHA256.HashData(clientKey);
        var withoutProof = "c=biws,r=" + nonce; // biws = base64("n,,")
        var authMessage = $"{_clientFirstBare},{serverFirst},{withoutProof}";
        var clientSignature = ScramSha256.Hmac(storedKey, authMessage);
        var proof = ScramSha256.Xor(clientKey, clientSignature);
        var serverKey = ScramSha256.Hmac(saltedPassword, "Server Key"u8);
        _serverSignature = ScramSha256.Hmac(serverKey, authMessage);
        return withoutProof + ",p=" + Convert.ToBase64String(proof);
    }

    public bool VerifyServerFinal(string serverFinal)
    {
        if (_serverSignature is null)
            return false;
        var attributes = ScramSha256.ParseAttributes(serverFinal);
        return attributes.TryGetValue('v', out var signature)
            && CryptographicOperations.FixedTimeEquals(Convert.FromBase64String(signature), _serverSignature);
    }
}
