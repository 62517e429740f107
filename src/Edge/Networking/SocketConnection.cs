using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Http.Features;

namespace MProxy.Edge.Networking;

/// <summary>
/// What both transports' TCP connections share (<see cref="DirectSocketConnection"/>,
/// <see cref="Epoll.EpollConnection"/>): the connection's identity and endpoints, the closed token,
/// <see cref="Abort"/> (shut the socket down under whoever uses it) and a dispose that runs once.
/// Each transport supplies its pipes and how the socket is finally closed.
/// </summary>
internal abstract class SocketConnection : ConnectionContext, IDuplexPipe
{
    private readonly CancellationTokenSource _closed = new(); // never disposed: ConnectionClosed may be read after disposal
    private int _disposed;
    private string? _connectionId;
    private IFeatureCollection? _features;
    private IDictionary<object, object?>? _items;

    protected SocketConnection(Socket socket, EndPoint? remote = null)
    {
        Socket = socket;
        LocalEndPoint = Unmapped(socket.LocalEndPoint);
        RemoteEndPoint = Unmapped(remote ?? socket.RemoteEndPoint);
        ConnectionClosed = _closed.Token;
    }

    protected Socket Socket { get; }

    public abstract PipeReader Input { get; }

    public abstract PipeWriter Output { get; }

    public override IDuplexPipe Transport { get => this; set => throw new NotSupportedException("the transport of a socket connection is fixed"); }

    // Kestrel's bookkeeping for a connection it accepts; the edge's own (the epoll loops' clients,
    // server connections) never reads them, so they are made on first use only.
    public override string ConnectionId
    {
        get => _connectionId ??= Guid.NewGuid().ToString("n");
        set => _connectionId = value;
    }

    public override IFeatureCollection Features => _features ??= new FeatureCollection();

    public override IDictionary<object, object?> Items
    {
        get => _items ??= new Dictionary<object, object?>();
        set => _items = value;
    }

    public override EndPoint? LocalEndPoint { get; set; }

    public override EndPoint? RemoteEndPoint { get; set; }

    public override void Abort(ConnectionAbortedException abortReason)
    {
        // Shut the socket down: a pending receive ends (the reader sees the end of the stream) and a
        // pending send fails, on whichever thread is using them.
        try
        {
            Socket.Shutdown(SocketShutdown.Both);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            // already closed
        }
        try
        {
            _closed.Cancel();
        }
        catch (ObjectDisposedException)
        {
        }
    }

    public override ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
            return ValueTask.CompletedTask;
        Abort(new ConnectionAbortedException("disposed"));
        return CloseAsync();
    }

    /// <summary>Closes the socket, once, after it was shut down.</summary>
    protected abstract ValueTask CloseAsync();

    /// <summary>A dual-mode socket's IPv4 peers as plain IPv4 (<c>127.0.0.1:5432</c>, not <c>[::ffff:127.0.0.1]:5432</c>) for logs and the console.</summary>
    private static EndPoint? Unmapped(EndPoint? endpoint) =>
        endpoint is IPEndPoint { Address.IsIPv4MappedToIPv6: true } mapped ? new IPEndPoint(mapped.Address.MapToIPv4(), mapped.Port) : endpoint;
}
