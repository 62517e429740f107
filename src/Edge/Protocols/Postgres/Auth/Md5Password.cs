using System.Security.Cryptography;
using System.Text;

namespace MProxy.Edge.Protocols.Postgres.Auth;

/// <summary>
/// PostgreSQL's md5 password scheme: the stored form is <c>"md5" + md5(password + user)</c>, the
/// wire response is <c>"md5" + md5(hex(md5(password + user)) + salt)</c>.
/// </summary>
internal static class Md5Password
{
    public const string Prefix = "md5";

    public static string Hash(string user, string password) =>
        Prefix + Convert.ToHexStringLower(MD5.HashData(Encoding.UTF8.GetBytes(password + user)));

    public static bool IsHash(string value) =>
        value.Length == 35 && value.StartsWith(Prefix, StringComparison.Ordinal) && value.AsSpan(3).ContainsAnyExcept("0123456789abcdef") is false;

    /// <summary>The response to send for a stored hash (<see cref="Hash"/>) and a four-byte salt.</summary>
    public static string Response(string storedHash, ReadOnlySpan<byte> salt)
    {
        Span<byte> input = stackalloc byte[32 + 4];
        Encoding.ASCII.GetBytes(storedHash.AsSpan(3), input);
        salt.CopyTo(input[32..]);
        return Prefix + Convert.ToHexStringLower(MD5.HashData(input));
    }

    public static bool Verify(string storedHash, ReadOnlySpan<byte> salt, string response) =>
        CryptographicOperations.FixedTimeEquals(Encoding.ASCII.GetBytes(Response(storedHash, salt)), Encoding.ASCII.GetBytes(response));
}
