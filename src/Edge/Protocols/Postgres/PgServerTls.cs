using System.Buffers;
using System.Security.Authentication;
using Microsoft.AspNetCore.Connections;
using MProxy.Edge.Configuration;
using MProxy.Edge.Networking;

namespace MProxy.Edge.Protocols.Postgres;

/// <summary>
/// The edge's side of an SSLRequest to a PostgreSQL server (<c>databases[].serverTls</c>): asked
/// before the startup message; <c>S</c> starts the handshake, <c>N</c> is cleartext for
/// <c>prefer</c> and a failure for <c>require</c> and <c>verify-full</c>.
/// </summary>
internal static class PgServerTls
{
    private static readonly byte[] SslRequest = [0, 0, 0, 8, 0x04, 0xD2, 0x16, 0x2F];

    /// <summary>Connects to <paramref name="endpoint"/> and negotiates TLS as <paramref name="tls"/> says.</summary>
    /// <exception cref="PgServerLoginException">the server refused TLS where it is required, or the handshake failed.</exception>
    public static async ValueTask<ConnectionContext> ConnectAsync(INetworkConnector connector, HostPort endpoint, ServerTlsConfig tls, CancellationToken cancellationToken)
    {
        var plain = await connector.ConnectAsync(endpoint, cancellationToken);
        if (tls.Mode == ServerTlsMode.Disable)
            return plain;
        try
        {
            plain.Transport.Output.Write(SslRequest);
            await plain.Transport.Output.FlushAsync(cancellationToken);
            var (answer, trailing) = await ReadAnswerAsync(plain.Transport.Input, cancellationToken);
            switch (answer)
            {
                case (byte)'S':
                    // Bytes behind the 'S' came in cleartext before the handshake: never read them as
                    // the server's (the client-side buffer stuffing of CVE-2021-23222).
                    if (trailing)
                        throw new PgServerLoginException(PgSqlState.ProtocolViolation, "the server sent unencrypted data after accepting TLS");
                    TlsTransport transport;
                    try
                    {
                        transport = await TlsTransport.ConnectAsync(plain.Transport, endpoint.Host, tls, cancellationToken);
                    }
                    catch (AuthenticationException e)
                    {
                        throw new PgServerLoginException(PgSqlState.ConnectionFailure,
                            $"TLS handshake failed (serverTls.mode is {tls.ModeName}): {e.Message}{(e.InnerException is { } inner ? " " + inner.Message : "")}");
                    }
                    return new TlsConnection(plain, transport);
                case (byte)'N' when tls.Mode == ServerTlsMode.Prefer:
                    return plain;
                case (byte)'N':
                    throw new PgServerLoginException(PgSqlState.ServerRejectedConnection, $"the server does not accept TLS and serverTls.mode is {tls.ModeName}");
                default:
                    throw new PgServerLoginException(PgSqlState.ProtocolViolation, $"unexpected answer to SSLRequest (0x{answer:X2})");
            }
        }
        catch
        {
            await plain.DisposeAsync();
            throw;
        }
    }

    private static async ValueTask<(byte Answer, bool Trailing)> ReadAnswerAsync(System.IO.Pipelines.PipeReader input, CancellationToken cancellationToken)
    {
        while (true)
        {
            var result = await input.ReadAsync(cancellationToken);
            var buffer = result.Buffer;
            if (!buffer.IsEmpty)
            {
                var answer = buffer.FirstSpan[0];
                var trailing = buffer.Length > 1;
                input.AdvanceTo(buffer.GetPosition(1));
                return (answer, trailing);
            }
            input.AdvanceTo(buffer.Start, buffer.End);
            if (result.IsCompleted)
                throw new IOException("the server closed the connection before answering the SSLRequest");
        }
    }

    /// <summary>A connector that negotiates TLS on every connection it opens (the health-check probe's).</summary>
    public sealed class Connector(INetworkConnector inner, ServerTlsConfig tls) : INetworkConnector
    {
        public ValueTask<ConnectionContext> ConnectAsync(HostPort endpoint, CancellationToken cancellationToken) =>
            PgServerTls.ConnectAsync(inner, endpoint, tls, cancellationToken);
    }
}
