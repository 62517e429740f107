using System.IO.Pipelines;
using System.Text;
using MProxy.Edge.Protocols.Postgres.Auth;

namespace MProxy.Edge.Protocols.Postgres;

/// <summary>What a server told the edge while logging in.</summary>
internal sealed record PgServerStartup(int ProcessId, int SecretKey, IReadOnlyList<KeyValuePair<string, string>> Parameters);

/// <summary>A server refused the edge's login, or broke the protocol while it logged in.</summary>
internal sealed class PgServerLoginException(string sqlState, string message) : Exception(message)
{
    public string SqlState { get; } = sqlState;
}

/// <summary>
/// The edge's side of a server login: StartupMessage, then SCRAM-SHA-256, md5, cleartext or trust,
/// then ParameterStatus and BackendKeyData up to the first ReadyForQuery.
/// </summary>
internal static class PgServerLogin
{
    /// <summary>What pooled server connections show in <c>pg_stat_activity</c> until a client sets its own.</summary>
    public const string ApplicationName = "mproxy";

    /// <summary>What the health checks' connections show in <c>pg_stat_activity</c> (they hold no pool slot).</summary>
    public const string HealthCheckApplicationName = "mproxy health check";

    public static async Task<PgServerStartup> LoginAsync(
        PipeReader input, PipeWriter output, string user, string database, string? password, int maxMessageBytes, CancellationToken cancellationToken,
        string applicationName = ApplicationName)
    {
        PgMessageWriter.WriteStartup(output,
        [
            new("user", user),
            new("database", database),
            new("application_name", applicationName),
        ]);
        await output.FlushAsync(cancellationToken);

        ScramClientExchange? scram = null;
        int processId = 0, secretKey = 0;
        var parameters = new List<KeyValuePair<string, string>>();
        while (true)
        {
            var (code, payload) = await ReadMessageAsync(input, maxMessageBytes, cancellationToken);
            switch ((PgBackendCode)code)
            {
                case PgBackendCode.Authentication:
                    scram = await AuthenticateAsync(output, payload, user, password, scram, cancellationToken);
                    break;
                case PgBackendCode.ErrorResponse:
                    var error = PgErrorFields.Parse(payload);
                    throw new PgServerLoginException(error.SqlState, error.Message);
                case PgBackendCode.ParameterStatus:
                    {
                        var reader = new PgMessageReader(payload);
                        var name = reader.ReadCString();
                        var value = reader.ReadCString();
                        parameters.RemoveAll(p => p.Key == name);
                        parameters.Add(new(name, value));
                        break;
                    }
                case PgBackendCode.BackendKeyData:
                    {
                        var reader = new PgMessageReader(payload);
                        processId = reader.ReadInt32();
                        secretKey = reader.ReadInt32();
                        break;
                    }
                case PgBackendCode.ReadyForQuery:
                    return new PgServerStartup(processId, secretKey, parameters);
                case PgBackendCode.NoticeResponse:
                case PgBackendCode.NegotiateProtocolVersion:
                    break;
                default:
                    throw new PgServerLoginException(PgSqlState.ProtocolViolation, $"unexpected message '{(char)code}' during login");
            }
        }
    }

    private static async ValueTask<ScramClientExchange?> AuthenticateAsync(
        PipeWriter output, byte[] payload, string user, string? password, ScramClientExchange? scram, CancellationToken cancellationToken)
    {
        var request = (PgAuthRequest)new PgMessageReader(payload).ReadInt32();
        var data = payload.AsSpan(4);
        switch (request)
        {
            case PgAuthRequest.Ok:
                return scram;
            case PgAuthRequest.CleartextPassword:
                PgMessageWriter.WritePasswordMessage(output, RequirePassword(password, "cleartext"));
                break;
            case PgAuthRequest.Md5Password:
                PgMessageWriter.WritePasswordMessage(output, Md5Password.Response(Md5Password.Hash(user, RequirePassword(password, "md5")), data[..4]));
                break;
            case PgAuthRequest.Sasl:
                {
                    var mechanisms = new List<string>();
                    var reader = new PgMessageReader(data);
                    while (reader.Remaining > 0)
                    {
                        var mechanism = reader.ReadCString();
                        if (mechanism.Length == 0)
                            break;
                        mechanisms.Add(mechanism);
                    }
                    if (!mechanisms.Contains(ScramSha256.Mechanism))
                        throw new PgServerLoginException(PgSqlState.FeatureNotSupported, $"the server offers no supported SASL mechanism ({string.Join(", ", mechanisms)})");
                    scram = new ScramClientExchange(RequirePassword(password, "SCRAM-SHA-256"));
                    PgMessageWriter.WriteSaslInitialResponse(output, ScramSha256.Mechanism, Encoding.UTF8.GetBytes(scram.CreateClientFirst()));
                    break;
                }
            case PgAuthRequest.SaslContinue when scram is not null:
                try
                {
                    PgMessageWriter.WriteSaslResponse(output, Encoding.UTF8.GetBytes(scram.HandleServerFirst(Encoding.UTF8.GetString(data))));
                }
                catch (FormatException e)
                {
                    throw new PgServerLoginException(PgSqlState.ProtocolViolation, "SCRAM exchange with the server failed: " + e.Message);
                }
                break;
            case PgAuthRequest.SaslFinal when scram is not null:
                if (!scram.VerifyServerFinal(Encoding.UTF8.GetString(data)))
                    throw new PgServerLoginException(PgSqlState.InvalidAuthorizationSpecification, "the server's SCRAM signature is wrong (is it the server you configured?)");
                return scram;
            default:
                throw new PgServerLoginException(PgSqlState.FeatureNotSupported, $"the server asks for authentication method {(int)request}, which mproxy does not support");
        }
        await output.FlushAsync(cancellationToken);
        return scram;
    }

    private static string RequirePassword(string? password, string method) =>
        password ?? throw new PgServerLoginException(PgSqlState.InvalidPassword, $"the server asks for a {method} password and none is configured for this user");

    /// <summary>Reads one whole tagged message into a new array (login and other rare paths only).</summary>
    public static async ValueTask<(byte Code, byte[] Payload)> ReadMessageAsync(PipeReader input, int maxMessageBytes, CancellationToken cancellationToken)
    {
        while (true)
        {
            var result = await input.ReadAsync(cancellationToken);
            var buffer = result.Buffer;
            if (PgFrame.TryReadMessage(buffer, maxMessageBytes, out var code, out var payload, out var end))
            {
                var array = System.Buffers.BuffersExtensions.ToArray(payload);
                input.AdvanceTo(end);
                return (code, array);
            }
            if (result.IsCompleted || result.IsCanceled)
            {
                input.AdvanceTo(buffer.Start, buffer.End);
                throw new PgServerLoginException(PgSqlState.ConnectionFailure, "the server closed the connection during login");
            }
            input.AdvanceTo(buffer.Start, buffer.End);
        }
    }
}
