using System.Buffers;
using System.IO.Pipelines;
using System.Text;

namespace MProxy.Edge.Protocols.MySql;

/// <summary>What a server told the edge while it logged in.</summary>
internal sealed record MySqlServerHandshake(uint ConnectionId, string ServerVersion, MySqlCapabilities Capabilities, MySqlServerStatus Status, byte Collation);

/// <summary>A server refused the edge's login, or broke the protocol while it logged in.</summary>
internal sealed class MySqlServerLoginException(ushort code, string sqlState, string message) : Exception(message)
{
    public ushort Code { get; } = code;

    public string SqlState { get; } = sqlState;
}

/// <summary>What the edge asks of a server connection at login.</summary>
internal sealed record MySqlLoginRequest(string User, string? Password, string Database, byte Collation, MySqlCapabilities Capabilities);

/// <summary>
/// The edge as a client of a server: handshake v10, HandshakeResponse41, then
/// <c>mysql_native_password</c> or <c>caching_sha2_password</c> (fast path, or full authentication
/// with the server's RSA public key since the edge does not use TLS), following auth switches, up
/// to the OK.
/// </summary>
internal static class MySqlServerLogin
{
    /// <summary>Capabilities the edge asks every server connection for (FoundRows and LocalFiles per pool).</summary>
    public const MySqlCapabilities Wanted =
        MySqlCapabilities.LongPassword | MySqlCapabilities.LongFlag | MySqlCapabilities.ConnectWithDb | MySqlCapabilities.Protocol41
        | MySqlCapabilities.Transactions | MySqlCapabilities.SecureConnection | MySqlCapabilities.MultiStatements | MySqlCapabilities.MultiResults
        | MySqlCapabilities.PsMultiResults | MySqlCapabilities.PluginAuth | MySqlCapabilities.PluginAuthLenencClientData;

    private const int MaxLoginPacket = 64 * 1024;

    public static async Task<MySqlServerHandshake> LoginAsync(PipeReader input, PipeWriter output, MySqlLoginRequest request, CancellationToken cancellationToken)
    {
        var (sequence, greeting) = await ReadPacketAsync(input, cancellationToken);
        if (greeting.Length > 0 && greeting[0] == MySqlResponseHeader.Err)
            throw ToException(greeting);
        var handshake = ParseHandshake(greeting, out var nonce, out var plugin);
        if ((handshake.Capabilities & MySqlCapabilities.Protocol41) == 0)
            throw new MySqlServerLoginException(0, "08S01", "the server does not speak protocol 4.1");
        var capabilities = request.Capabilities & (handshake.Capabilities | MySqlCapabilities.ConnectWithDb);
        if (plugin is not (MySqlAuthPlugins.NativePassword or MySqlAuthPlugins.CachingSha2Password))
            plugin = MySqlAuthPlugins.NativePassword;
        var password = request.Password ?? "";
        var response = Scramble(plugin, password, nonce);

        var payload = new ArrayBufferWriter<byte>(128);
        payload.PutUInt32((uint)capabilities);
        payload.PutUInt32(1u << 30);
        payload.Put(request.Collation);
        payload.PutZeros(23);
        payload.PutNullTerminated(request.User);
        if ((capabilities & MySqlCapabilities.PluginAuthLenencClientData) != 0)
        {
            payload.PutLengthEncodedBytes(response);
        }
        else
        {
            payload.Put((byte)response.Length);
            payload.Write(response);
        }
        if ((capabilities & MySqlCapabilities.ConnectWithDb) != 0)
            payload.PutNullTerminated(request.Database);
        if ((capabilities & MySqlCapabilities.PluginAuth) != 0)
            payload.PutNullTerminated(plugin);
        sequence++;
        sequence = MySqlFrame.WriteMessage(output, sequence, payload.WrittenSpan);
        await output.FlushAsync(cancellationToken);

        while (true)
        {
            var (received, packet) = await ReadPacketAsync(input, cancellationToken);
            sequence = (byte)(received + 1);
            if (packet.Length == 0)
                throw new MySqlServerLoginException(0, "08S01", "empty packet during login");
            switch (packet[0])
            {
                case MySqlResponseHeader.Ok:
                    return handshake with { Capabilities = capabilities, Status = MySqlResponseTracker.ReadOk(packet) };
                case MySqlResponseHeader.Err:
                    throw ToException(packet);
                case MySqlResponseHeader.AuthSwitch:
                    {
                        var reader = new MySqlPayloadReader(packet);
                        reader.Skip(1);
                        plugin = reader.ReadNullTerminatedString(toEndIfMissing: true);
                        var data = reader.ReadRest();
                        nonce = (data.Length > 0 && data[^1] == 0 ? data[..^1] : data).ToArray();
                        if (plugin is not (MySqlAuthPlugins.NativePassword or MySqlAuthPlugins.CachingSha2Password))
                            throw new MySqlServerLoginException(1251, "08004", $"the server asks for authentication plugin '{plugin}', which mproxy does not support");
                        await WriteAsync(output, sequence, Scramble(plugin, password, nonce), cancellationToken);
                        break;
                    }
                case MySqlResponseHeader.AuthMoreData when plugin == MySqlAuthPlugins.CachingSha2Password:
                    if (packet.Length >= 2 && packet[1] == 0x03)
                        break; // fast authentication succeeded: OK follows
                    if (packet.Length >= 2 && packet[1] == 0x04)
                    {
                        // Full authentication: without TLS, ask for the server's RSA public key.
                        await WriteAsync(output, sequence, [0x02], cancellationToken);
                        var (keySequence, key) = await ReadPacketAsync(input, cancellationToken);
                        if (key.Length == 0 || key[0] != MySqlResponseHeader.AuthMoreData)
                        {
                            if (key.Length > 0 && key[0] == MySqlResponseHeader.Err)
                                throw ToException(key);
                            throw new MySqlServerLoginException(0, "08S01", "the server did not send its RSA public key");
                        }
                        var pem = Encoding.ASCII.GetString(key, 1, key.Length - 1);
                        byte[] encrypted;
                        try
                        {
                            encrypted = MySqlAuth.EncryptPassword(password, nonce, pem);
                        }
                        catch (Exception e) when (e is ArgumentException or System.Security.Cryptography.CryptographicException)
                        {
                            throw new MySqlServerLoginException(0, "08S01", "the server's RSA public key is unusable: " + e.Message);
                        }
                        await WriteAsync(output, (byte)(keySequence + 1), encrypted, cancellationToken);
                        break;
                    }
                    throw new MySqlServerLoginException(0, "08S01", "unexpected caching_sha2_password exchange");
                default:
                    throw new MySqlServerLoginException(0, "08S01", $"unexpected packet 0x{packet[0]:X2} during login");
            }
        }
    }

    private static byte[] Scramble(string plugin, string password, ReadOnlySpan<byte> nonce) =>
        plugin == MySqlAuthPlugins.CachingSha2Password ? MySqlAuth.CachingSha2Password(password, nonce) : MySqlAuth.NativePassword(password, nonce);

    private static async ValueTask WriteAsync(PipeWriter output, byte sequence, byte[] payload, CancellationToken cancellationToken)
    {
        MySqlFrame.WriteMessage(output, sequence, payload);
        await output.FlushAsync(cancellationToken);
    }

    /// <summary>Parses the server's Handshake v10.</summary>
    public static MySqlServerHandshake ParseHandshake(byte[] payload, out byte[] nonce, out string plugin)
    {
        try
        {
            var reader = new MySqlPayloadReader(payload);
            var protocol = reader.ReadByte();
            if (protocol != 10)
                throw new MySqlServerLoginException(0, "08S01", $"unsupported handshake protocol version {protocol}");
            var version = reader.ReadNullTerminatedString();
            var connectionId = reader.ReadUInt32();
            var part1 = reader.ReadBytes(8).ToArray();
            reader.Skip(1);
            var capabilities = (MySqlCapabilities)reader.ReadUInt16();
            byte collation = 0;
            var status = MySqlServerStatus.None;
            plugin = MySqlAuthPlugins.NativePassword;
            nonce = part1;
            if (reader.Remaining > 0)
            {
                collation = reader.ReadByte();
                status = (MySqlServerStatus)reader.ReadUInt16();
                capabilities |= (MySqlCapabilities)((uint)reader.ReadUInt16() << 16);
                var authLength = reader.ReadByte();
                reader.Skip(10);
                if ((capabilities & MySqlCapabilities.SecureConnection) != 0)
                {
                    var part2Length = Math.Max(13, authLength - 8);
                    var part2 = reader.ReadBytes(Math.Min(part2Length, reader.Remaining));
                    if (part2.Length > 0 && part2[^1] == 0)
                        part2 = part2[..^1];
                    nonce = [.. part1, .. part2];
                }
                if ((capabilities & MySqlCapabilities.PluginAuth) != 0 && reader.Remaining > 0)
                    plugin = reader.ReadNullTerminatedString(toEndIfMissing: true);
            }
            return new MySqlServerHandshake(connectionId, version, capabilities, status, collation);
        }
        catch (MySqlProtocolException e)
        {
            throw new MySqlServerLoginException(0, "08S01", "malformed server handshake: " + e.Message);
        }
    }

    /// <summary>An ERR packet's code, SQLSTATE and message.</summary>
    public static (ushort Code, string SqlState, string Message) ParseError(ReadOnlySpan<byte> payload)
    {
        var reader = new MySqlPayloadReader(payload);
        reader.Skip(1);
        var code = reader.Remaining >= 2 ? reader.ReadUInt16() : (ushort)0;
        var sqlState = "HY000";
        if (reader.Remaining >= 6 && reader.Rest[0] == (byte)'#')
        {
            reader.Skip(1);
            sqlState = Encoding.ASCII.GetString(reader.ReadBytes(5));
        }
        return (code, sqlState, Encoding.UTF8.GetString(reader.ReadRest()));
    }

    private static MySqlServerLoginException ToException(ReadOnlySpan<byte> payload)
    {
        var (code, sqlState, message) = ParseError(payload);
        return new MySqlServerLoginException(code, sqlState, message);
    }

    /// <summary>Reads one whole message into a new array (login and other rare paths only).</summary>
    public static async ValueTask<(byte Sequence, byte[] Payload)> ReadPacketAsync(PipeReader input, CancellationToken cancellationToken)
    {
        while (true)
        {
            var result = await input.ReadAsync(cancellationToken);
            var buffer = result.Buffer;
            bool found;
            ReadOnlySequence<byte> message;
            byte sequence;
            bool split;
            try
            {
                found = MySqlFrame.TryReadMessage(buffer, MaxLoginPacket, out message, out _, out sequence, out split);
            }
            catch (MySqlProtocolException e)
            {
                input.AdvanceTo(buffer.Start);
                throw new MySqlServerLoginException(0, "08S01", e.Message);
            }
            if (found)
            {
                var payload = MySqlFrame.Payload(message, split).ToArray();
                input.AdvanceTo(message.End);
                return (sequence, payload);
            }
            input.AdvanceTo(buffer.Start, buffer.End);
            if (result.IsCompleted || result.IsCanceled)
                throw new MySqlServerLoginException(2013, "HY000", "the server closed the connection during login");
        }
    }
}
