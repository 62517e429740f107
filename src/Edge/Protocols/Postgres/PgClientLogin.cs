using System.Buffers;
using System.IO.Pipelines;
using System.Runtime.CompilerServices;
using System.Security.Cryptography;
using System.Text;
using MProxy.Edge.Configuration;
using MProxy.Edge.Protocols.Postgres.Auth;

namespace MProxy.Edge.Protocols.Postgres;

/// <summary>The first message a client sent, once SSL and GSS encryption requests are answered.</summary>
internal abstract record PgFirstMessage;

internal sealed record PgStartupRequest(IReadOnlyDictionary<string, string> Parameters) : PgFirstMessage;

internal sealed record PgCancelRequest(int ProcessId, int SecretKey) : PgFirstMessage;

/// <summary>SSLRequest; <paramref name="TrailingData"/>: the client sent more bytes behind it, before any answer (never legitimate).</summary>
internal sealed record PgSslRequest(bool TrailingData) : PgFirstMessage;

/// <summary>The client side of login: the startup packet and client authentication.</summary>
internal static class PgClientLogin
{
    private const int MaxStartupLength = 10_000;
    private static readonly ConditionalWeakTable<UserConfig, ScramVerifier> s_verifiers = [];
    private static readonly ScramVerifier s_unknownUserVerifier = ScramVerifier.FromPassword(Convert.ToBase64String(RandomNumberGenerator.GetBytes(24)));

    /// <summary>
    /// Reads the startup-phase messages up to a startup, cancel or SSL request (the caller answers
    /// an SSLRequest: with <c>S</c> and a TLS handshake, or <c>N</c>); answers GSSENCRequest with
    /// <c>N</c> (no GSSAPI encryption).
    /// </summary>
    /// <returns>null if the client went away.</returns>
    public static async Task<PgFirstMessage?> ReadFirstMessageAsync(PipeReader input, PipeWriter output, CancellationToken cancellationToken)
    {
        while (true)
        {
            var result = await input.ReadAsync(cancellationToken);
            var buffer = result.Buffer;
            if (!PgFrame.TryReadStartup(buffer, MaxStartupLength, out var payload, out var end))
            {
                input.AdvanceTo(buffer.Start, buffer.End);
                if (result.IsCompleted)
                    return null;
                continue;
            }
            var bytes = System.Buffers.BuffersExtensions.ToArray(payload);
            var trailing = !buffer.Slice(end).IsEmpty;
            input.AdvanceTo(end);
            var reader = new PgMessageReader(bytes);
            var code = reader.ReadInt32();
            switch (code)
            {
                case PgStartupCodes.SslRequest:
                    if (bytes.Length != 4)
                        PgProtocolException.Throw("malformed encryption request");
                    return new PgSslRequest(trailing);
                case PgStartupCodes.GssEncRequest:
                    if (bytes.Length != 4)
                        PgProtocolException.Throw("malformed encryption request");
                    output.Write("N"u8);
                    await output.FlushAsync(cancellationToken);
                    continue;
                case PgStartupCodes.CancelRequest:
                    if (bytes.Length != 12)
                        PgProtocolException.Throw("malformed cancel request");
                    return new PgCancelRequest(reader.ReadInt32(), reader.ReadInt32());
                default:
                    if (code >> 16 != 3)
                        throw new PgErrorException(PgSqlState.FeatureNotSupported, $"mproxy: unsupported frontend protocol {code >> 16}.{code & 0xFFFF}: server supports 3.0", fatal: true);
                    var parameters = new Dictionary<string, string>(StringComparer.Ordinal);
                    while (reader.Remaining > 0)
                    {
                        var name = reader.ReadCString();
                        if (name.Length == 0)
                            break;
                        parameters[name] = reader.ReadCString();
                    }
                    if ((code & 0xFFFF) != 0)
                    {
                        // A 3.x client: accept 3.0 and none of its _pq_ options.
                        var pqOptions = parameters.Keys.Where(k => k.StartsWith("_pq_.", StringComparison.Ordinal)).ToList();
                        WriteNegotiateProtocolVersion(output, pqOptions);
                        foreach (var option in pqOptions)
                            parameters.Remove(option);
                    }
                    return new PgStartupRequest(parameters);
            }
        }
    }

    private static void WriteNegotiateProtocolVersion(PipeWriter output, List<string> options)
    {
        var length = 4 + 4 + 4 + options.Sum(o => Encoding.UTF8.GetByteCount(o) + 1);
        var span = output.GetSpan(length + 1);
        span[0] = (byte)PgBackendCode.NegotiateProtocolVersion;
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(span[1..], length);
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(span[5..], 0);
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(span[9..], options.Count);
        var offset = 13;
        foreach (var option in options)
        {
            offset += Encoding.UTF8.GetBytes(option, span[offset..]);
            span[offset++] = 0;
        }
        output.Advance(offset);
    }

    /// <summary>
    /// Authenticates the client as <paramref name="userName"/> with the configured method. Unknown
    /// users go through the same exchange and fail at its end, so that logins do not reveal which
    /// users exist.
    /// </summary>
    /// <exception cref="PgErrorException">authentication failed (fatal, 28P01).</exception>
    public static async Task AuthenticateAsync(PipeReader input, PipeWriter output, AuthMethod method, string userName, UserConfig? user, CancellationToken cancellationToken)
    {
        if (method == AuthMethod.Trust && user is not null)
            return;
        var useMd5 = method == AuthMethod.Md5 && (user is null || user.Password is not null || user.Md5Hash is not null);
        if (useMd5)
        {
            var salt = RandomNumberGenerator.GetBytes(4);
            PgMessageWriter.WriteAuthentication(output, PgAuthRequest.Md5Password, salt);
            await output.FlushAsync(cancellationToken);
            var response = await ReadPasswordMessageAsync(input, cancellationToken);
            var reader = new PgMessageReader(response);
            var text = reader.ReadCString();
            var stored = user?.Md5Hash ?? (user?.Password is { } password ? Md5Password.Hash(userName, password) : null);
            if (stored is null || !Md5Password.Verify(stored, salt, text))
                throw AuthenticationFailed(userName);
            return;
        }

        var verifier = user is null ? s_unknownUserVerifier : GetVerifier(user);
        var exchange = new ScramServerExchange(verifier);
        PgMessageWriter.WriteAuthenticationSasl(output, ScramSha256.Mechanism);
        await output.FlushAsync(cancellationToken);
        try
        {
            var initial = await ReadPasswordMessageAsync(input, cancellationToken);
            var reader = new PgMessageReader(initial);
            var mechanism = reader.ReadCString();
            if (mechanism != ScramSha256.Mechanism)
                throw new PgErrorException(PgSqlState.ProtocolViolation, $"mproxy: client selected an invalid SASL authentication mechanism '{mechanism}'", fatal: true);
            var length = reader.ReadInt32();
            var clientFirst = Encoding.UTF8.GetString(reader.ReadBytes(length));
            var serverFirst = exchange.HandleClientFirst(clientFirst);
            PgMessageWriter.WriteAuthentication(output, PgAuthRequest.SaslContinue, Encoding.UTF8.GetBytes(serverFirst));
            await output.FlushAsync(cancellationToken);

            var final = await ReadPasswordMessageAsync(input, cancellationToken);
            var serverFinal = exchange.HandleClientFinal(Encoding.UTF8.GetString(final));
            if (serverFinal is null || user is null)
                throw AuthenticationFailed(userName);
            PgMessageWriter.WriteAuthentication(output, PgAuthRequest.SaslFinal, Encoding.UTF8.GetBytes(serverFinal));
        }
        catch (FormatException e)
        {
            throw new PgErrorException(PgSqlState.ProtocolViolation, "mproxy: malformed SCRAM message: " + e.Message, fatal: true);
        }
    }

    private static ScramVerifier GetVerifier(UserConfig user) =>
        s_verifiers.GetValue(user, static u =>
            u.ScramVerifier is not null && ScramVerifier.TryParse(u.ScramVerifier, out var parsed)
                ? parsed!
                : ScramVerifier.FromPassword(u.Password ?? Convert.ToBase64String(RandomNumberGenerator.GetBytes(24))));

    private static PgErrorException AuthenticationFailed(string user) =>
        new(PgSqlState.InvalidPassword, $"mproxy: password authentication failed for user \"{user}\"", fatal: true);

    private static async Task<byte[]> ReadPasswordMessageAsync(PipeReader input, CancellationToken cancellationToken)
    {
        while (true)
        {
            var result = await input.ReadAsync(cancellationToken);
            var buffer = result.Buffer;
            if (PgFrame.TryReadMessage(buffer, MaxStartupLength, out var code, out var payload, out var end))
            {
                var bytes = System.Buffers.BuffersExtensions.ToArray(payload);
                input.AdvanceTo(end);
                if (code != (byte)PgFrontendCode.Password)
                    PgProtocolException.Throw($"expected a password message, got '{(char)code}'");
                return bytes;
            }
            input.AdvanceTo(buffer.Start, buffer.End);
            if (result.IsCompleted)
                throw new EndOfStreamException("the client left during authentication");
        }
    }
}
