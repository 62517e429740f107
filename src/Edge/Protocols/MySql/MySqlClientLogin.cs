using System.Buffers;
using System.IO.Pipelines;
using MProxy.Edge.Configuration;

namespace MProxy.Edge.Protocols.MySql;

/// <summary>A client's HandshakeResponse41.</summary>
internal sealed record MySqlHandshakeResponse(MySqlCapabilities Capabilities, byte Collation, string User, byte[] AuthResponse, string? Database, string? Plugin);

/// <summary>
/// The edge as the server of a client's login: Handshake v10 (offering
/// <c>mysql_native_password</c>), the client's HandshakeResponse41, then verification of the
/// scramble with the configured password — <c>mysql_native_password</c>, or
/// <c>caching_sha2_password</c> on its fast path (the edge knows the password, so it never needs
/// the full exchange) — switching any other plugin to <c>mysql_native_password</c>. With TLS
/// configured the handshake offers CLIENT_SSL: a client's SSLRequest is followed by the TLS
/// handshake (the caller's), then its HandshakeResponse41 over TLS (<see cref="UseTransport"/>).
/// Unknown users go through the same exchange and fail at its end.
/// </summary>
internal sealed class MySqlClientLogin(PipeReader input, PipeWriter output)
{
    private PipeReader _input = input;
    private PipeWriter _output = output;

    /// <summary>Capabilities offered to clients (CLIENT_SSL is added when TLS is configured). No compression, session tracking or DEPRECATE_EOF: responses are relayed as the servers send them.</summary>
    public const MySqlCapabilities Offered =
        MySqlCapabilities.LongPassword | MySqlCapabilities.FoundRows | MySqlCapabilities.LongFlag | MySqlCapabilities.ConnectWithDb
        | MySqlCapabilities.LocalFiles | MySqlCapabilities.Protocol41 | MySqlCapabilities.Interactive | MySqlCapabilities.IgnoreSigpipe
        | MySqlCapabilities.Transactions | MySqlCapabilities.SecureConnection | MySqlCapabilities.MultiStatements
        | MySqlCapabilities.MultiResults | MySqlCapabilities.PsMultiResults | MySqlCapabilities.PluginAuth | MySqlCapabilities.ConnectAttrs
        | MySqlCapabilities.PluginAuthLenencClientData;

    private const int MaxLoginPacket = 64 * 1024;

    private readonly byte[] _nonce = MySqlAuth.CreateNonce();

    /// <summary>The sequence id of the edge's next packet.</summary>
    public byte Sequence { get; private set; }

    public byte[] Nonce => _nonce;

    /// <summary>Continues the login over TLS (after the client's SSLRequest and the handshake).</summary>
    public void UseTransport(IDuplexPipe transport)
    {
        _input = transport.Input;
        _output = transport.Output;
    }

    /// <summary>Sends Handshake v10, offering TLS when <paramref name="offerTls"/>.</summary>
    public async ValueTask SendHandshakeAsync(uint connectionId, string serverVersion, byte collation, bool offerTls, CancellationToken cancellationToken)
    {
        var offered = offerTls ? Offered | MySqlCapabilities.Ssl : Offered;
        Sequence = MySqlPacketWriter.WritePayload(_output, 0, p =>
        {
            p.Put(10);
            p.PutNullTerminated(serverVersion);
            p.PutUInt32(connectionId);
            p.Write(_nonce.AsSpan(0, 8));
            p.Put(0);
            p.PutUInt16((ushort)((uint)offered & 0xFFFF));
            p.Put(collation);
            p.PutUInt16((ushort)MySqlServerStatus.Autocommit);
            p.PutUInt16((ushort)((uint)offered >> 16));
            p.Put(MySqlAuth.NonceLength + 1);
            p.PutZeros(10);
            p.Write(_nonce.AsSpan(8));
            p.Put(0);
            p.PutNullTerminated(MySqlAuthPlugins.NativePassword);
        });
        await _output.FlushAsync(cancellationToken);
    }

    /// <summary>
    /// Reads and parses the client's HandshakeResponse41; null when it is an SSLRequest and
    /// <paramref name="tlsOffered"/> (the caller then runs the TLS handshake and reads again).
    /// </summary>
    public async ValueTask<MySqlHandshakeResponse?> ReadResponseAsync(bool tlsOffered, CancellationToken cancellationToken)
    {
        var payload = await ReadAsync(cancellationToken);
        if (payload is null)
            throw new EndOfStreamException("the client left during login");
        var reader = new MySqlPayloadReader(payload);
        var capabilities = (MySqlCapabilities)reader.ReadUInt32();
        if ((capabilities & MySqlCapabilities.Protocol41) == 0)
            throw new MySqlErrorException(MySqlError.HandshakeError, "mproxy: the client does not speak protocol 4.1", fatal: true);
        reader.ReadUInt32(); // max packet size
        var collation = reader.ReadByte();
        reader.Skip(23);
        if (reader.Remaining == 0 && (capabilities & MySqlCapabilities.Ssl) != 0)
        {
            if (tlsOffered)
                return null;
            throw new MySqlErrorException(MySqlError.HandshakeError, "mproxy: TLS is not available here (no tls section, or TLS is already on); connect without SSL (--ssl=0, SslMode=None)", fatal: true);
        }
        var user = reader.ReadNullTerminatedString();
        byte[] auth;
        if ((capabilities & MySqlCapabilities.PluginAuthLenencClientData) != 0)
            auth = reader.ReadLengthEncodedBytes().ToArray();
        else if ((capabilities & MySqlCapabilities.SecureConnection) != 0)
            auth = reader.ReadBytes(reader.ReadByte()).ToArray();
        else
            auth = reader.ReadNullTerminated().ToArray();
        string? database = null;
        if ((capabilities & MySqlCapabilities.ConnectWithDb) != 0 && reader.Remaining > 0)
            database = reader.ReadNullTerminatedString(toEndIfMissing: true);
        string? plugin = null;
        if ((capabilities & MySqlCapabilities.PluginAuth) != 0 && reader.Remaining > 0)
            plugin = reader.ReadNullTerminatedString(toEndIfMissing: true);
        // Connection attributes (CLIENT_CONNECT_ATTRS) are not passed on.
        return new MySqlHandshakeResponse(capabilities & Offered, collation, user, auth, string.IsNullOrEmpty(database) ? null : database, plugin);
    }

    /// <summary>
    /// Verifies the client's scramble, switching its plugin when needed. Leaves
    /// <see cref="Sequence"/> at the id of the OK (or ERR) the caller sends next.
    /// </summary>
    /// <exception cref="MySqlErrorException">authentication failed (1045, fatal).</exception>
    public async ValueTask AuthenticateAsync(MySqlHandshakeResponse response, AuthMethod method, UserConfig? user, CancellationToken cancellationToken)
    {
        var plugin = (response.Capabilities & MySqlCapabilities.PluginAuth) == 0 ? MySqlAuthPlugins.NativePassword : response.Plugin ?? MySqlAuthPlugins.NativePassword;
        var auth = response.AuthResponse;
        if (plugin is not (MySqlAuthPlugins.NativePassword or MySqlAuthPlugins.CachingSha2Password))
        {
            // Any other plugin (sha256_password, client_ed25519, dialog…): switch to mysql_native_password.
            Sequence = MySqlPacketWriter.WritePayload(_output, Sequence, p =>
            {
                p.Put(MySqlResponseHeader.AuthSwitch);
                p.PutNullTerminated(MySqlAuthPlugins.NativePassword);
                p.Write(_nonce);
                p.Put(0);
            });
            await _output.FlushAsync(cancellationToken);
            auth = await ReadAsync(cancellationToken) ?? throw new EndOfStreamException("the client left during login");
            plugin = MySqlAuthPlugins.NativePassword;
        }
        if (!Verify(plugin, auth, _nonce, method, user))
            throw AccessDenied(response.User, auth.Length > 0);
        if (plugin == MySqlAuthPlugins.CachingSha2Password)
        {
            // Fast authentication succeeded.
            Sequence = MySqlFrame.WriteMessage(_output, Sequence, [MySqlResponseHeader.AuthMoreData, 0x03]);
        }
    }

    /// <summary>Checks a client's scramble of <paramref name="nonce"/> for <paramref name="plugin"/> against the configured password.</summary>
    public static bool Verify(string plugin, ReadOnlySpan<byte> auth, ReadOnlySpan<byte> nonce, AuthMethod method, UserConfig? user)
    {
        if (user is null)
            return false;
        if (method == AuthMethod.Trust)
            return true;
        if (user.Password is not { } password)
            return false;
        var expected = plugin == MySqlAuthPlugins.CachingSha2Password ? MySqlAuth.CachingSha2Password(password, nonce) : MySqlAuth.NativePassword(password, nonce);
        return MySqlAuth.Verify(expected, auth);
    }

    public static MySqlErrorException AccessDenied(string user, bool usingPassword) =>
        new(MySqlError.AccessDenied, $"mproxy: Access denied for user '{user}' (using password: {(usingPassword ? "YES" : "NO")})", fatal: true);

    /// <summary>Reads one login packet; null when the client went away.</summary>
    private async ValueTask<byte[]?> ReadAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            var result = await _input.ReadAsync(cancellationToken);
            var buffer = result.Buffer;
            if (MySqlFrame.TryReadMessage(buffer, MaxLoginPacket, out var message, out _, out var sequence, out var split))
            {
                var payload = MySqlFrame.Payload(message, split).ToArray();
                _input.AdvanceTo(message.End);
                Sequence = (byte)(sequence + 1);
                return payload;
            }
            _input.AdvanceTo(buffer.Start, buffer.End);
            if (result.IsCompleted)
                return null;
        }
    }
}
