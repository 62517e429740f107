using System.Security.Cryptography;
using System.Text;

namespace MProxy.Edge.Protocols.MySql;

/// <summary>
/// The password scrambles of <c>mysql_native_password</c> and <c>caching_sha2_password</c>, and
/// the RSA-encrypted password of the latter's full authentication without TLS.
/// </summary>
internal static class MySqlAuth
{
    public const int NonceLength = 20;

    /// <summary>A fresh 20-byte nonce of printable, non-NUL bytes (some clients treat it as a C string).</summary>
    public static byte[] CreateNonce()
    {
        var nonce = RandomNumberGenerator.GetBytes(NonceLength);
        for (var i = 0; i < nonce.Length; i++)
            nonce[i] = (byte)(0x21 + nonce[i] % 0x5E); // '!'..'~'
        return nonce;
    }

    /// <summary><c>mysql_native_password</c>: SHA1(password) XOR SHA1(nonce + SHA1(SHA1(password))); empty for an empty password.</summary>
    public static byte[] NativePassword(string password, ReadOnlySpan<byte> nonce)
    {
        if (password.Length == 0)
            return [];
        var stage1 = SHA1.HashData(Encoding.UTF8.GetBytes(password));
        var stage2 = SHA1.HashData(stage1);
        Span<byte> input = stackalloc byte[nonce.Length + stage2.Length];
        nonce.CopyTo(input);
        stage2.CopyTo(input[nonce.Length..]);
        var mask = SHA1.HashData(input);
        for (var i = 0; i < stage1.Length; i++)
            stage1[i] ^= mask[i];
        return stage1;
    }

    /// <summary><c>caching_sha2_password</c>: SHA256(password) XOR SHA256(SHA256(SHA256(password)) + nonce); empty for an empty password.</summary>
    public static byte[] CachingSha2Password(string password, ReadOnlySpan<byte> nonce)
    {
        if (password.Length == 0)
            return [];
        var stage1 = SHA256.HashData(Encoding.UTF8.GetBytes(password));
        var stage2 = SHA256.HashData(stage1);
        Span<byte> input = stackalloc byte[stage2.Length + nonce.Length];
        stage2.CopyTo(input);
        nonce.CopyTo(input[stage2.Length..]);
        var mask = SHA256.HashData(input);
        for (var i = 0; i < stage1.Length; i++)
            stage1[i] ^= mask[i];
        return stage1;
    }

    /// <summary>Compares a client's scramble with the expected one in constant time.</summary>
    public static bool Verify(ReadOnlySpan<byte> expected, ReadOnlySpan<byte> actual) =>
        expected.Length == actual.Length && CryptographicOperations.FixedTimeEquals(expected, actual);

    /// <summary>
    /// Full authentication without TLS: (password + NUL) XOR the nonce (repeated), encrypted with the
    /// server's RSA public key (PEM) with OAEP padding — what <c>caching_sha2_password</c> and
    /// <c>sha256_password</c> accept in place of a cleartext password on an unencrypted connection.
    /// </summary>
    public static byte[] EncryptPassword(string password, ReadOnlySpan<byte> nonce, string publicKeyPem)
    {
        var plain = new byte[Encoding.UTF8.GetByteCount(password) + 1];
        Encoding.UTF8.GetBytes(password, plain);
        for (var i = 0; i < plain.Length; i++)
            plain[i] ^= nonce[i % nonce.Length];
        using var rsa = RSA.Create();
        rsa.ImportFromPem(publicKeyPem);
        return rsa.Encrypt(plain, RSAEncryptionPadding.OaepSHA1);
    }

    /// <summary>Undoes <see cref="EncryptPassword"/> with the private key (what a server does; used by tests).</summary>
    public static string DecryptPassword(ReadOnlySpan<byte> encrypted, ReadOnlySpan<byte> nonce, RSA privateKey)
    {
        ArgumentNullException.ThrowIfNull(privateKey);
        var plain = privateKey.Decrypt(encrypted.ToArray(), RSAEncryptionPadding.OaepSHA1);
        for (var i = 0; i < plain.Length; i++)
            plain[i] ^= nonce[i % nonce.Length];
        var end = Array.IndexOf(plain, (byte)0);
        return Encoding.UTF8.GetString(plain, 0, end < 0 ? plain.Length : end);
    }
}
