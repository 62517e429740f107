using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Text;
using MProxy.Edge.Protocols.MySql;

namespace MProxy.TestSupport;

/// <summary>One MySQL packet read off the wire.</summary>
public readonly record struct MySqlWirePacket(byte Sequence, byte[] Payload)
{
    public bool IsOk => Payload.Length > 0 && Payload[0] == 0x00;

    public bool IsError => Payload.Length > 0 && Payload[0] == 0xFF;

    public bool IsEof => Payload.Length is > 0 and < 9 && Payload[0] == 0xFE;

    public ushort ErrorCode => IsError ? BinaryPrimitives.ReadUInt16LittleEndian(Payload.AsSpan(1)) : (ushort)0;

    public string SqlState => IsError && Payload.Length >= 9 && Payload[3] == '#' ? Encoding.ASCII.GetString(Payload, 4, 5) : "";

    public string ErrorMessage => IsError ? Encoding.UTF8.GetString(Payload, Payload.Length >= 9 && Payload[3] == '#' ? 9 : 3, Payload.Length - (Payload.Length >= 9 && Payload[3] == '#' ? 9 : 3)) : "";
}

/// <summary>
/// A deliberately low-level MySQL client for protocol tests: it logs in with mysql_native_password,
/// sends exactly the packets a test asks for (malformed ones included) and reads raw packets.
/// </summary>
public sealed class MySqlRawClient : IAsyncDisposable
{
    private readonly Socket _socket;
    private readonly NetworkStream _stream;

    private MySqlRawClient(Socket socket)
    {
        _socket = socket;
        _stream = new NetworkStream(socket, ownsSocket: false);
    }

    /// <summary>The nonce of the server's greeting.</summary>
    public byte[] Nonce { get; private set; } = [];

    public uint ConnectionId { get; private set; }

    public static async Task<MySqlRawClient> ConnectAsync(int port)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await socket.ConnectAsync(new IPEndPoint(IPAddress.Loopback, port));
        return new MySqlRawClient(socket);
    }

    /// <summary>Connects and logs in; returns the client and the server's answer to the login (OK or ERR).</summary>
    public static async Task<(MySqlRawClient Client, MySqlWirePacket Answer)> LoginAsync(int port, string user, string password, string? database, uint extraCapabilities = 0, uint withoutCapabilities = 0)
    {
        var client = await ConnectAsync(port);
        var greeting = await client.ReadGreetingAsync();
        var capabilities = (0x000FA20Fu | extraCapabilities) & ~withoutCapabilities; // 4.1, secure connection, plugin auth, multi statements/results, transactions, connect with db
        var payload = new List<byte>();
        payload.AddRange(BitConverter.GetBytes(capabilities));
        payload.AddRange(BitConverter.GetBytes(16 * 1024 * 1024));
        payload.Add(45);
        payload.AddRange(new byte[23]);
        payload.AddRange(Encoding.UTF8.GetBytes(user));
        payload.Add(0);
        var scramble = MySqlAuth.NativePassword(password, greeting);
        payload.Add((byte)scramble.Length);
        payload.AddRange(scramble);
        payload.AddRange(Encoding.UTF8.GetBytes(database ?? ""));
        payload.Add(0);
        payload.AddRange(Encoding.UTF8.GetBytes(MySqlAuthPlugins.NativePassword));
        payload.Add(0);
        await client.SendAsync(1, [.. payload]);
        return (client, await client.ReadAsync());
    }

    /// <summary>Reads Handshake v10 and returns its nonce.</summary>
    public async Task<byte[]> ReadGreetingAsync()
    {
        var greeting = await ReadAsync();
        var p = greeting.Payload;
        var versionEnd = Array.IndexOf(p, (byte)0, 1);
        var offset = versionEnd + 1;
        ConnectionId = BinaryPrimitives.ReadUInt32LittleEndian(p.AsSpan(offset));
        var part1 = p.AsSpan(offset + 4, 8).ToArray();
        offset += 4 + 8 + 1 + 2 + 1 + 2 + 2 + 1 + 10;
        var part2 = p.AsSpan(offset, 12).ToArray();
        Nonce = [.. part1, .. part2];
        return Nonce;
    }

    /// <summary>Sends one packet with the given sequence id (the length is computed; use <see cref="SendRawAsync"/> for a wrong one).</summary>
    public async Task SendAsync(byte sequence, byte[] payload)
    {
        var packet = new byte[4 + payload.Length];
        packet[0] = (byte)payload.Length;
        packet[1] = (byte)(payload.Length >> 8);
        packet[2] = (byte)(payload.Length >> 16);
        packet[3] = sequence;
        payload.CopyTo(packet, 4);
        await _stream.WriteAsync(packet);
    }

    public Task SendRawAsync(byte[] bytes) => _stream.WriteAsync(bytes).AsTask();

    public Task SendCommandAsync(byte command, byte[]? argument = null) => SendAsync(0, [command, .. argument ?? []]);

    public Task SendQueryAsync(string sql) => SendCommandAsync(0x03, Encoding.UTF8.GetBytes(sql));

    public async Task<MySqlWirePacket> ReadAsync()
    {
        var header = new byte[4];
        await _stream.ReadExactlyAsync(header);
        var length = header[0] | header[1] << 8 | header[2] << 16;
        var payload = new byte[length];
        await _stream.ReadExactlyAsync(payload);
        return new MySqlWirePacket(header[3], payload);
    }

    /// <summary>Reads a COM_QUERY response (OK, ERR, or one or more text result sets) and returns its packets.</summary>
    public async Task<List<MySqlWirePacket>> ReadResultAsync()
    {
        var packets = new List<MySqlWirePacket>();
        while (true)
        {
            var first = await ReadAsync();
            packets.Add(first);
            if (first.IsError)
                return packets;
            ushort status;
            if (first.IsOk)
            {
                status = OkStatus(first.Payload);
            }
            else
            {
                // column definitions, EOF, rows, EOF
                while (!(await ReadAsync() is var column && Add(packets, column).IsEof))
                {
                }
                MySqlWirePacket row;
                do
                {
                    row = await ReadAsync();
                    packets.Add(row);
                }
                while (!row.IsEof && !row.IsError);
                if (row.IsError)
                    return packets;
                status = BinaryPrimitives.ReadUInt16LittleEndian(row.Payload.AsSpan(3));
            }
            if ((status & 0x0008) == 0)
                return packets;
        }
    }

    /// <summary>The text values of the rows in a result read by <see cref="ReadResultAsync"/> (first column of each row).</summary>
    public static List<string?> FirstColumn(List<MySqlWirePacket> packets)
    {
        var values = new List<string?>();
        var eofs = 0;
        foreach (var packet in packets)
        {
            if (packet.IsEof)
            {
                eofs++;
                continue;
            }
            if (eofs % 2 == 1 && !packet.IsError)
            {
                var p = packet.Payload;
                if (p[0] == 0xFB)
                {
                    values.Add(null);
                    continue;
                }
                var (length, size) = p[0] switch
                {
                    0xFC => (BinaryPrimitives.ReadUInt16LittleEndian(p.AsSpan(1)), 3),
                    _ => ((int)p[0], 1),
                };
                values.Add(Encoding.UTF8.GetString(p, size, length));
            }
        }
        return values;
    }

    public static ushort OkStatus(byte[] payload)
    {
        var offset = 1;
        offset += LengthEncodedSize(payload[offset]);
        offset += LengthEncodedSize(payload[offset]);
        return BinaryPrimitives.ReadUInt16LittleEndian(payload.AsSpan(offset));
    }

    private static int LengthEncodedSize(byte first) => first switch { < 0xFB => 1, 0xFC => 3, 0xFD => 4, _ => 9 };

    private static MySqlWirePacket Add(List<MySqlWirePacket> packets, MySqlWirePacket packet)
    {
        packets.Add(packet);
        return packet;
    }

    /// <summary>Whether the other side closed the connection (reads until the end of the stream).</summary>
    public async Task<bool> IsClosedAsync()
    {
        var buffer = new byte[256];
        try
        {
            while (true)
            {
                var read = await _stream.ReadAsync(buffer);
                if (read == 0)
                    return true;
            }
        }
        catch (IOException)
        {
            return true;
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stream.DisposeAsync();
        _socket.Dispose();
    }
}
