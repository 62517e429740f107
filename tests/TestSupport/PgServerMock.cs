using System.Buffers;
using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Threading.Channels;
using MProxy.Edge.Protocols.Postgres;

namespace MProxy.TestSupport;

/// <summary>
/// A scriptable PostgreSQL server for the cases a real server will not produce on demand: it logs
/// clients in (trust), then the test reads what the edge sent and writes whatever replies it wants —
/// wrong, partial or none — and can drop the connection at any point.
/// </summary>
public sealed class PgServerMock : IAsyncDisposable
{
    private readonly TcpListener _listener;
    private readonly Channel<MockServerSession> _sessions = Channel.CreateUnbounded<MockServerSession>();
    private readonly CancellationTokenSource _stop = new();
    private int _nextProcessId = 1000;

    private PgServerMock()
    {
        _listener = new TcpListener(IPAddress.Loopback, 0);
        _listener.Start();
        _ = AcceptLoopAsync();
    }

    public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

    public int Accepted { get; private set; }

    public static PgServerMock Start() => new();

    /// <summary>The next connection the edge opened, logged in.</summary>
    public async Task<MockServerSession> NextSessionAsync(TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(10));
        return await _sessions.Reader.ReadAsync(cts.Token);
    }

    private async Task AcceptLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket socket;
            try
            {
                socket = await _listener.AcceptSocketAsync(_stop.Token);
            }
            catch
            {
                return;
            }
            Accepted++;
            var session = new MockServerSession(socket, Interlocked.Increment(ref _nextProcessId));
            try
            {
                await session.LoginAsync();
                await _sessions.Writer.WriteAsync(session);
            }
            catch
            {
                session.Kill();
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Stop();
        _stop.Dispose();
    }
}

public sealed class MockServerSession
{
    private readonly Socket _socket;
    private readonly NetworkStream _stream;

    internal MockServerSession(Socket socket, int processId)
    {
        _socket = socket;
        _stream = new NetworkStream(socket, ownsSocket: true);
        ProcessId = processId;
    }

    public int ProcessId { get; }

    public IReadOnlyDictionary<string, string> StartupParameters { get; private set; } = new Dictionary<string, string>();

    internal async Task LoginAsync()
    {
        var lengthBytes = new byte[4];
        await _stream.ReadExactlyAsync(lengthBytes);
        var body = new byte[BinaryPrimitives.ReadInt32BigEndian(lengthBytes) - 4];
        await _stream.ReadExactlyAsync(body);
        var parameters = new Dictionary<string, string>();
        var parts = Encoding.UTF8.GetString(body, 4, body.Length - 4).Split('\0');
        for (var i = 0; i + 1 < parts.Length && parts[i].Length > 0; i += 2)
            parameters[parts[i]] = parts[i + 1];
        StartupParameters = parameters;

        var writer = new ArrayBufferWriter<byte>();
        PgMessageWriter.WriteAuthentication(writer, PgAuthRequest.Ok);
        foreach (var (name, value) in new[]
        {
            ("server_version", "15.99 (mock)"), ("server_encoding", "UTF8"), ("client_encoding", "UTF8"),
            ("DateStyle", "ISO, MDY"), ("IntervalStyle", "postgres"), ("TimeZone", "UTC"),
            ("integer_datetimes", "on"), ("standard_conforming_strings", "on"), ("application_name", "mproxy"),
        })
        {
            PgMessageWriter.WriteParameterStatus(writer, name, value);
        }
        PgMessageWriter.WriteBackendKeyData(writer, ProcessId, 4242);
        PgMessageWriter.WriteReadyForQuery(writer, PgTransactionStatus.Idle);
        await _stream.WriteAsync(writer.WrittenMemory);
    }

    /// <summary>Reads the next message the edge sent.</summary>
    public async Task<PgWireMessage> ReadAsync(TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(10));
        var header = new byte[5];
        await _stream.ReadExactlyAsync(header, cts.Token);
        var payload = new byte[BinaryPrimitives.ReadInt32BigEndian(header.AsSpan(1)) - 4];
        await _stream.ReadExactlyAsync(payload, cts.Token);
        return new PgWireMessage((char)header[0], payload);
    }

    /// <summary>Reads messages up to and including the next Sync or Query.</summary>
    public async Task<List<PgWireMessage>> ReadRequestAsync()
    {
        var messages = new List<PgWireMessage>();
        while (true)
        {
            var message = await ReadAsync();
            messages.Add(message);
            if (message.Code is 'S' or 'Q')
                return messages;
        }
    }

    public async Task SendAsync(Action<ArrayBufferWriter<byte>> write)
    {
        var writer = new ArrayBufferWriter<byte>();
        write(writer);
        await _stream.WriteAsync(writer.WrittenMemory);
    }

    public Task SendRawAsync(byte[] bytes) => _stream.WriteAsync(bytes).AsTask();

    /// <summary>Answers a simple query with one text column and the given rows.</summary>
    public Task SendResultAsync(string column, IEnumerable<string?> rows, char status = (char)PgTransactionStatus.Idle) => SendAsync(w =>
    {
        PgMessageWriter.WriteRowDescription(w, [column]);
        var count = 0;
        foreach (var row in rows)
        {
            PgMessageWriter.WriteDataRow(w, [row]);
            count++;
        }
        PgMessageWriter.WriteCommandComplete(w, $"SELECT {count}");
        PgMessageWriter.WriteReadyForQuery(w, (PgTransactionStatus)status);
    });

    public void Kill()
    {
        try
        {
            _socket.LingerState = new LingerOption(true, 0);
            _socket.Close();
        }
        catch (ObjectDisposedException)
        {
        }
    }
}
