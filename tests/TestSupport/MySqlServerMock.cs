using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace MProxy.TestSupport;

/// <summary>
/// A scriptable fake MySQL server for protocol edge cases a real server will not produce on demand:
/// it accepts connections on a loopback port, greets with Handshake v10 (mysql_native_password),
/// accepts any login (or refuses it), and answers each COM_QUERY with what <see cref="Answer"/>
/// returns for its text. Build answers with the static packet helpers.
/// </summary>
public sealed class MySqlServerMock : IAsyncDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly CancellationTokenSource _stop = new();
    private readonly List<Task> _connections = [];
    private readonly Task _accepting;

    public MySqlServerMock()
    {
        _listener.Start();
        _accepting = AcceptAsync();
    }

    public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

    /// <summary>The packets (payloads) answering a query; null closes the connection instead.</summary>
    public Func<string, IReadOnlyList<byte[]>?> Answer { get; set; } = _ => [Ok()];

    /// <summary>When set, logins are refused with this ERR payload.</summary>
    public byte[]? LoginError { get; set; }

    /// <summary>Every query received, in order.</summary>
    public List<string> Queries { get; } = [];

    /// <summary>Connections accepted so far.</summary>
    public int ConnectionCount;

    private async Task AcceptAsync()
    {
        try
        {
            while (true)
            {
                var socket = await _listener.AcceptSocketAsync(_stop.Token);
                Interlocked.Increment(ref ConnectionCount);
                lock (_connections)
                    _connections.Add(ServeAsync(socket));
            }
        }
        catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
        {
            // stopped
        }
    }

    private async Task ServeAsync(Socket socket)
    {
        using var _ = socket;
        await using var stream = new NetworkStream(socket, ownsSocket: false);
        try
        {
            await WriteAsync(stream, 0, Greeting());
            await ReadAsync(stream); // HandshakeResponse41
            if (LoginError is { } refused)
            {
                await WriteAsync(stream, 2, refused);
                return;
            }
            await WriteAsync(stream, 2, Ok());
            while (true)
            {
                var command = await ReadAsync(stream);
                if (command.Length == 0 || command[0] == 0x01)
                    return; // COM_QUIT
                if (command[0] != 0x03)
                {
                    await WriteAsync(stream, 1, Ok());
                    continue;
                }
                var sql = Encoding.UTF8.GetString(command, 1, command.Length - 1);
                lock (Queries)
                    Queries.Add(sql);
                var answer = Answer(sql);
                if (answer is null)
                    return;
                byte sequence = 1;
                foreach (var packet in answer)
                    await WriteAsync(stream, sequence++, packet);
            }
        }
        catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or EndOfStreamException)
        {
            // the client went away
        }
    }

    private async Task<byte[]> ReadAsync(NetworkStream stream)
    {
        var header = new byte[4];
        await stream.ReadExactlyAsync(header, _stop.Token);
        var payload = new byte[header[0] | header[1] << 8 | header[2] << 16];
        await stream.ReadExactlyAsync(payload, _stop.Token);
        return payload;
    }

    private async Task WriteAsync(NetworkStream stream, byte sequence, byte[] payload)
    {
        var frame = new byte[4 + payload.Length];
        frame[0] = (byte)payload.Length;
        frame[1] = (byte)(payload.Length >> 8);
        frame[2] = (byte)(payload.Length >> 16);
        frame[3] = sequence;
        payload.CopyTo(frame, 4);
        await stream.WriteAsync(frame, _stop.Token);
    }

    /// <summary>Handshake v10 of a MariaDB 10.11 with protocol 4.1, multi statements and plugin auth.</summary>
    private static byte[] Greeting()
    {
        var p = new List<byte> { 10 };
        p.AddRange("10.11.99-MariaDB-mock"u8.ToArray());
        p.Add(0);
        p.AddRange(BitConverter.GetBytes(7u));
        p.AddRange("abcdefgh"u8.ToArray());
        p.Add(0);
        const uint capabilities = 0x000FF7FF | (1u << 16) | (1u << 17) | (1u << 19) | (1u << 21);
        p.AddRange(BitConverter.GetBytes((ushort)(capabilities & 0xFFFF)));
        p.Add(45);
        p.AddRange(BitConverter.GetBytes((ushort)0x0002));
        p.AddRange(BitConverter.GetBytes((ushort)(capabilities >> 16)));
        p.Add(21);
        p.AddRange(new byte[10]);
        p.AddRange("ijklmnopqrst"u8.ToArray());
        p.Add(0);
        p.AddRange("mysql_native_password"u8.ToArray());
        p.Add(0);
        return [.. p];
    }

    // ------------------------------------------------------------------ packet helpers

    /// <summary>OK with the given status flags (autocommit by default).</summary>
    public static byte[] Ok(ushort status = 0x0002) => [0x00, 0, 0, (byte)status, (byte)(status >> 8), 0, 0];

    /// <summary>EOF with the given status flags (0x0008: more results follow).</summary>
    public static byte[] Eof(ushort status = 0x0002) => [0xFE, 0, 0, (byte)status, (byte)(status >> 8)];

    public static byte[] Error(ushort code, string sqlState, string message)
    {
        var p = new List<byte> { 0xFF, (byte)code, (byte)(code >> 8), (byte)'#' };
        p.AddRange(Encoding.ASCII.GetBytes(sqlState));
        p.AddRange(Encoding.UTF8.GetBytes(message));
        return [.. p];
    }

    /// <summary>A ColumnDefinition41 of a VARCHAR column named <paramref name="name"/>.</summary>
    public static byte[] Column(string name)
    {
        var p = new List<byte>();
        foreach (var part in new[] { "def", "", "", "", name, name })
            AddLengthEncoded(p, part);
        p.Add(0x0C);
        p.AddRange(BitConverter.GetBytes((ushort)45));
        p.AddRange(BitConverter.GetBytes(1024u));
        p.Add(0xFD);
        p.AddRange(new byte[] { 0, 0, 0, 0, 0 });
        return [.. p];
    }

    /// <summary>A text-protocol row (null values are SQL NULL).</summary>
    public static byte[] Row(params string?[] values)
    {
        var p = new List<byte>();
        foreach (var value in values)
        {
            if (value is null)
                p.Add(0xFB);
            else
                AddLengthEncoded(p, value);
        }
        return [.. p];
    }

    /// <summary>A whole text result set: column count, columns, EOF, rows, EOF (with <paramref name="moreResults"/>).</summary>
    public static List<byte[]> ResultSet(string[] columns, IEnumerable<string?[]> rows, bool moreResults = false)
    {
        List<byte[]> packets = [[(byte)columns.Length]];
        foreach (var column in columns)
            packets.Add(Column(column));
        packets.Add(Eof());
        foreach (var row in rows)
            packets.Add(Row(row));
        packets.Add(Eof(moreResults ? (ushort)0x000A : (ushort)0x0002));
        return packets;
    }

    private static void AddLengthEncoded(List<byte> p, string value)
    {
        var bytes = Encoding.UTF8.GetBytes(value);
        if (bytes.Length < 251)
        {
            p.Add((byte)bytes.Length);
        }
        else
        {
            p.Add(0xFC);
            var length = new byte[2];
            BinaryPrimitives.WriteUInt16LittleEndian(length, (ushort)bytes.Length);
            p.AddRange(length);
        }
        p.AddRange(bytes);
    }

    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        _listener.Stop();
        await _accepting;
        Task[] connections;
        lock (_connections)
            connections = [.. _connections];
        await Task.WhenAll(connections);
        _stop.Dispose();
    }
}
