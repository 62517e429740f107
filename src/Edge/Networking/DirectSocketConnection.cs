using System.Buffers;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Http.Features;

namespace MProxy.Edge.Networking;

/// <summary>
/// A TCP connection whose pipes read from and write to the socket directly, on the caller's thread:
/// a read is one <c>recv</c> into the reader's buffer, a flush one <c>send</c> of what was written.
/// </summary>
/// <remarks>
/// Kestrel's socket transport puts a <see cref="Pipe"/> and a loop between the socket and the
/// application in each direction (receive loop → pipe → reader; writer → pipe → send loop). Each
/// connection of the edge has one reader (a server connection's pump, a client's loop) and one
/// writer at a time (a server connection: the attached client's loop or the edge while idle; a
/// client: the attached server's pump, or the client's loop while none is attached, see
/// <c>RelayClientSession</c>), so those hand-offs buy nothing here. This is the BCL's stream pipes over
/// a <see cref="NetworkStream"/>: <see cref="PipeReader.CancelPendingRead"/> cancels the pending
/// receive (no data is lost: a cancelled receive has read nothing), and a flush completes when the
/// kernel has the bytes.
/// </remarks>
internal sealed class DirectSocketConnection : ConnectionContext, IDuplexPipe
{
    private const int MinimumReadSize = 4096;
    private const int MinimumWriteSize = 4096;

    private readonly Socket _socket;
    private readonly NetworkStream _stream;
    private readonly CancellationTokenSource _closed = new(); // never disposed: ConnectionClosed may be read after disposal
    private int _disposed;

    public DirectSocketConnection(Socket socket)
    {
        _socket = socket;
        _stream = new NetworkStream(socket, ownsSocket: true);
        Input = PipeReader.Create(_stream, new StreamPipeReaderOptions(MemoryPool<byte>.Shared, bufferSize: 16 * 1024, minimumReadSize: MinimumReadSize, leaveOpen: true));
        Output = PipeWriter.Create(_stream, new StreamPipeWriterOptions(MemoryPool<byte>.Shared, minimumBufferSize: MinimumWriteSize, leaveOpen: true));
        LocalEndPoint = Unmapped(socket.LocalEndPoint);
        RemoteEndPoint = Unmapped(socket.RemoteEndPoint);
        ConnectionClosed = _closed.Token;
    }

    public PipeReader Input { get; }

    public PipeWriter Output { get; }

    public override IDuplexPipe Transport { get => this; set => throw new NotSupportedException("the transport of a direct socket connection is fixed"); }

    public override string ConnectionId { get; set; } = Guid.NewGuid().ToString("n");

    public override IFeatureCollection Features { get; } = new FeatureCollection();

    public override IDictionary<object, object?> Items { get; set; } = new Dictionary<object, object?>();

    public override EndPoint? LocalEndPoint { get; set; }

    public override EndPoint? RemoteEndPoint { get; set; }

    public override void Abort(ConnectionAbortedException abortReason)
    {
        // Shut the socket down: a pending receive ends (the pump sees the end of the stream) and a
        // pending send fails, on whichever thread is using them.
        try
        {
            _socket.Shutdown(SocketShutdown.Both);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            // already closed
        }
        Cancel();
    }

    public override async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
            return;
        // The pipes are not completed here: the pump may be inside a read, and completing a reader
        // under it would return its buffer to the pool mid-receive. Closing the socket ends that
        // read with an error; the buffers are left to the collector.
        Abort(new ConnectionAbortedException("disposed"));
        await _stream.DisposeAsync();
    }

    /// <summary>A dual-mode socket's IPv4 peers as plain IPv4 (<c>127.0.0.1:5432</c>, not <c>[::ffff:127.0.0.1]:5432</c>) for logs and the console.</summary>
    internal static EndPoint? Unmapped(EndPoint? endpoint) =>
        endpoint is IPEndPoint { Address.IsIPv4MappedToIPv6: true } mapped ? new IPEndPoint(mapped.Address.MapToIPv4(), mapped.Port) : endpoint;

    private void Cancel()
    {
        try
        {
            _closed.Cancel();
        }
        catch (ObjectDisposedException)
        {
        }
    }
}
