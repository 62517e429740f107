using System.Buffers;
using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Text;
using MProxy.Edge.Protocols.Postgres;
using MProxy.Edge.Protocols.Postgres.Auth;

namespace MProxy.TestSupport;

/// <summary>One message read off the wire.</summary>
public readonly record struct PgWireMessage(char Code, byte[] Payload)
{
    public string Text => Encoding.UTF8.GetString(Payload);

    /// <summary>The SQLSTATE of an ErrorResponse or NoticeResponse.</summary>
    public string? SqlState => Field('C');

    /// <summary>The message text of an ErrorResponse or NoticeResponse.</summary>
    public string? MessageText => Field('M');

    public string? Severity => Field('V');

    private string? Field(char type)
    {
        if (Payload is null || Code is not ('E' or 'N'))
            return null;
        var i = 0;
        while (i < Payload.Length && Payload[i] != 0)
        {
            var fieldType = (char)Payload[i++];
            var end = Array.IndexOf(Payload, (byte)0, i);
            if (end < 0)
                return null;
            var value = Encoding.UTF8.GetString(Payload, i, end - i);
            if (fieldType == type)
                return value;
            i = end + 1;
        }
        return null;
    }
}

/// <summary>
/// A deliberately low-level PostgreSQL client for protocol tests: it sends exactly the bytes a test
/// asks for (malformed ones included), reads raw messages, and can drop its socket abruptly.
/// </summary>
public sealed class RawPgClient : IAsyncDisposable
{
    private readonly Socket _socket;
    private readonly NetworkStream _stream;
    private readonly byte[] _header = new byte[5];

    private RawPgClient(Socket socket)
    {
        _socket = socket;
        _stream = new NetworkStream(socket, ownsSocket: false);
    }

    public static async Task<RawPgClient> ConnectAsync(int port)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await socket.ConnectAsync(new IPEndPoint(IPAddress.Loopback, port));
        return new RawPgClient(socket);
    }

    /// <summary>Connects and logs in with SCRAM-SHA-256, md5, cleartext or trust; returns the messages up to ReadyForQuery.</summary>
    public static async Task<(RawPgClient Client, List<PgWireMessage> Welcome)> LoginAsync(
        int port, string user, string database, string? password, IEnumerable<KeyValuePair<string, string>>? parameters = null)
    {
        var client = await ConnectAsync(port);
        var welcome = await client.StartupAsync(user, database, password, parameters);
        return (client, welcome);
    }

    public async Task<List<PgWireMessage>> StartupAsync(string user, string database, string? password, IEnumerable<KeyValuePair<string, string>>? parameters = null)
    {
        var all = new List<KeyValuePair<string, string>> { new("user", user), new("database", database) };
        if (parameters is not null)
            all.AddRange(parameters);
        var writer = new ArrayBufferWriter<byte>();
        PgMessageWriter.WriteStartup(writer, all);
        await SendAsync(writer.WrittenMemory);

        ScramClientExchange? scram = null;
        var messages = new List<PgWireMessage>();
        while (true)
        {
            var message = await ReadAsync() ?? throw new IOException("the server closed the connection during login");
            if (message.Code == 'R')
            {
                var request = BinaryPrimitives.ReadInt32BigEndian(message.Payload);
                var data = message.Payload.AsMemory(4);
                writer.Clear();
                switch (request)
                {
                    case 0:
                        continue;
                    case 3:
                        PgMessageWriter.WritePasswordMessage(writer, password!);
                        break;
                    case 5:
                        PgMessageWriter.WritePasswordMessage(writer, Md5Password.Response(Md5Password.Hash(user, password!), data.Span[..4]));
                        break;
                    case 10:
                        scram = new ScramClientExchange(password!);
                        PgMessageWriter.WriteSaslInitialResponse(writer, "SCRAM-SHA-256", Encoding.UTF8.GetBytes(scram.CreateClientFirst()));
                        break;
                    case 11:
                        PgMessageWriter.WriteSaslResponse(writer, Encoding.UTF8.GetBytes(scram!.HandleServerFirst(Encoding.UTF8.GetString(data.Span))));
                        break;
                    case 12:
                        if (!scram!.VerifyServerFinal(Encoding.UTF8.GetString(data.Span)))
                            throw new InvalidOperationException("bad server signature");
                        continue;
                    default:
                        throw new NotSupportedException($"auth request {request}");
                }
                await SendAsync(writer.WrittenMemory);
                continue;
            }
            messages.Add(message);
            if (message.Code is 'Z' or 'E')
                return messages;
        }
    }

    public async Task SendAsync(ReadOnlyMemory<byte> bytes) => await _stream.WriteAsync(bytes);

    public Task SendAsync(byte[] bytes) => SendAsync(bytes.AsMemory());

    public async Task SendQueryAsync(string sql)
    {
        var writer = new ArrayBufferWriter<byte>();
        PgMessageWriter.WriteQuery(writer, sql);
        await SendAsync(writer.WrittenMemory);
    }

    /// <summary>A tagged message: one code byte, then the payload with its length prefix computed.</summary>
    public static byte[] Message(char code, ReadOnlySpan<byte> payload)
    {
        var bytes = new byte[5 + payload.Length];
        bytes[0] = (byte)code;
        BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(1), 4 + payload.Length);
        payload.CopyTo(bytes.AsSpan(5));
        return bytes;
    }

    /// <summary>Reads one message, or null when the server closed the connection.</summary>
    public async Task<PgWireMessage?> ReadAsync(TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(15));
        if (!await ReadExactlyAsync(_header, cts.Token))
            return null;
        var length = BinaryPrimitives.ReadInt32BigEndian(_header.AsSpan(1));
        var payload = new byte[length - 4];
        if (!await ReadExactlyAsync(payload, cts.Token))
            return null;
        return new PgWireMessage((char)_header[0], payload);
    }

    /// <summary>Reads messages up to and including ReadyForQuery (or until the server closes the connection).</summary>
    public async Task<List<PgWireMessage>> ReadUntilReadyAsync()
    {
        var messages = new List<PgWireMessage>();
        while (await ReadAsync() is { } message)
        {
            messages.Add(message);
            if (message.Code == 'Z')
                break;
        }
        return messages;
    }

    /// <summary>Reads one raw byte (for the answer to SSLRequest).</summary>
    public async Task<int> ReadByteAsync()
    {
        var one = new byte[1];
        return await ReadExactlyAsync(one, CancellationToken.None) ? one[0] : -1;
    }

    /// <summary>True once the server has closed the connection (reads end of stream).</summary>
    public async Task<bool> IsClosedByServerAsync(TimeSpan? timeout = null)
    {
        try
        {
            while (await ReadAsync(timeout) is not null)
            {
            }
            return true;
        }
        catch (IOException)
        {
            return true;
        }
    }

    private async Task<bool> ReadExactlyAsync(byte[] buffer, CancellationToken cancellationToken)
    {
        var read = 0;
        while (read < buffer.Length)
        {
            var n = await _stream.ReadAsync(buffer.AsMemory(read), cancellationToken);
            if (n == 0)
                return false;
            read += n;
        }
        return true;
    }

    /// <summary>Drops the connection with a TCP reset, without a Terminate message (a crashed client).</summary>
    public void Kill()
    {
        _socket.LingerState = new LingerOption(true, 0);
        _socket.Close();
    }

    public async ValueTask DisposeAsync()
    {
        await _stream.DisposeAsync();
        _socket.Dispose();
    }
}
