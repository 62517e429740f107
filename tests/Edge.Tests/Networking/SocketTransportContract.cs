using System.Buffers;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Microsoft.AspNetCore.Connections;
using MProxy.Edge.Configuration;
using MProxy.Edge.Networking;

namespace MProxy.Edge.Tests.Networking;

/// <summary>
/// What every transport of database connections must do, over real loopback sockets: what the pumps
/// and sessions rely on. Each transport's test class derives from it.
/// </summary>
public abstract class SocketTransportContract : IAsyncLifetime
{
    protected static readonly TimeSpan Patience = TimeSpan.FromSeconds(10);
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private ConnectionContext _connection = null!;
    private Socket _peer = null!;

    protected static CancellationToken Token => TestContext.Current.CancellationToken;

    protected abstract INetworkConnector Connector { get; }

    private protected abstract DirectSocketListenerFactory ListenerFactory(IReadOnlyCollection<EndPoint> endpoints);

    /// <summary>The type of the connections the listener accepts.</summary>
    protected abstract Type ConnectionType { get; }

    /// <summary>The connection under test (connected to <see cref="Peer"/>).</summary>
    protected ConnectionContext Connection => _connection;

    /// <summary>The other end: a plain socket.</summary>
    protected Socket Peer => _peer;

    public async ValueTask InitializeAsync()
    {
        _listener.Start();
        var accept = _listener.AcceptSocketAsync(Token);
        var port = ((IPEndPoint)_listener.LocalEndpoint).Port;
        _connection = await Connector.ConnectAsync(new HostPort("127.0.0.1", port), Token);
        _peer = await accept;
    }

    public async ValueTask DisposeAsync()
    {
        await _connection.DisposeAsync();
        _peer.Dispose();
        _listener.Stop();
    }

    protected PipeReader Input => _connection.Transport.Input;

    protected async Task<string> ReadAllAvailableAsync(int length)
    {
        var text = new StringBuilder();
        while (text.Length < length)
        {
            var result = await Input.ReadAsync(Token).AsTask().WaitAsync(Patience, Token);
            text.Append(Encoding.ASCII.GetString(result.Buffer.ToArray()));
            Input.AdvanceTo(result.Buffer.End);
        }
        return text.ToString();
    }

    [Fact]
    public async Task WriteFlushAndRead_RoundTripThroughThePeer()
    {
        _connection.Transport.Output.Write("ping"u8);
        await _connection.Transport.Output.FlushAsync(Token);
        var received = new byte[4];
        Assert.Equal(4, await _peer.ReceiveAsync(received, SocketFlags.None, Token));
        Assert.Equal("ping", Encoding.ASCII.GetString(received));

        await _peer.SendAsync("pong"u8.ToArray(), SocketFlags.None, Token);
        Assert.Equal("pong", await ReadAllAvailableAsync(4));
        Assert.Equal(_peer.LocalEndPoint, _connection.RemoteEndPoint);
    }

    [Fact]
    public async Task ReadAsync_PartlyConsumed_KeepsTheRestForTheNextRead()
    {
        await _peer.SendAsync("abcdef"u8.ToArray(), SocketFlags.None, Token);
        var first = await Input.ReadAsync(Token).AsTask().WaitAsync(Patience, Token);
        while (first.Buffer.Length < 6)
        {
            Input.AdvanceTo(first.Buffer.Start, first.Buffer.End);
            first = await Input.ReadAsync(Token).AsTask().WaitAsync(Patience, Token);
        }
        Input.AdvanceTo(first.Buffer.GetPosition(2), first.Buffer.End); // a message cut in the middle

        await _peer.SendAsync("gh"u8.ToArray(), SocketFlags.None, Token);
        Assert.Equal("cdefgh", await ReadAllAvailableAsync(6));
    }

    [Fact]
    public async Task CancelPendingRead_WakesAPendingReadAndLosesNoData()
    {
        var pending = Input.ReadAsync(Token).AsTask();
        await Task.Delay(50, Token); // let the receive reach the socket
        Assert.False(pending.IsCompleted);

        Input.CancelPendingRead();
        var cancelled = await pending.WaitAsync(Patience, Token);
        Assert.True(cancelled.IsCanceled);
        Assert.True(cancelled.Buffer.IsEmpty);
        Input.AdvanceTo(cancelled.Buffer.End);

        await _peer.SendAsync("after"u8.ToArray(), SocketFlags.None, Token);
        Assert.Equal("after", await ReadAllAvailableAsync(5));
    }

    [Fact]
    public async Task CancelPendingRead_WithNoReadPending_CancelsTheNextOne()
    {
        Input.CancelPendingRead();
        var result = await Input.ReadAsync(Token).AsTask().WaitAsync(Patience, Token);
        Assert.True(result.IsCanceled);
        Input.AdvanceTo(result.Buffer.End);
    }

    [Fact]
    public async Task PeerCloses_ReadCompletes()
    {
        var pending = Input.ReadAsync(Token).AsTask();
        _peer.Shutdown(SocketShutdown.Send);
        var result = await pending.WaitAsync(Patience, Token);
        Assert.True(result.IsCompleted);
    }

    [Fact]
    public async Task PeerSendsAndClosesAtOnce_TheDataThenTheEnd()
    {
        // The data and the FIN are both in the socket before the first read: on an edge-triggered
        // loop they are one edge, and a short read must not be taken for "drained until the next
        // edge" (no edge follows a FIN) — a server that sent its last words and closed would
        // otherwise never be seen closed. (Found by the failover tests on the epoll transport.)
        await _peer.SendAsync("FATAL"u8.ToArray(), SocketFlags.None, Token);
        _peer.Shutdown(SocketShutdown.Send);
        await Task.Delay(200, Token);

        var data = await Input.ReadAsync(Token).AsTask().WaitAsync(Patience, Token);
        Assert.Equal("FATAL", Encoding.ASCII.GetString(data.Buffer.ToArray()));
        var sawEnd = data.IsCompleted;
        Input.AdvanceTo(data.Buffer.End);
        if (!sawEnd)
        {
            var end = await Input.ReadAsync(Token).AsTask().WaitAsync(Patience, Token);
            Assert.True(end.IsCompleted);
            Assert.True(end.Buffer.IsEmpty);
        }
    }

    [Fact]
    public async Task Abort_EndsAPendingReadAndSignalsConnectionClosed()
    {
        var pending = Input.ReadAsync(Token).AsTask();
        _connection.Abort(new ConnectionAbortedException("test"));

        var result = await pending.WaitAsync(Patience, Token);
        Assert.True(result.IsCompleted);
        Assert.True(_connection.ConnectionClosed.IsCancellationRequested);
        Assert.Equal(0, await _peer.ReceiveAsync(new byte[1], SocketFlags.None, Token)); // the peer sees the end of the stream
    }

    [Fact]
    public async Task DisposeAsync_DuringAPendingRead_FailsTheRead()
    {
        var pending = Input.ReadAsync(Token).AsTask();
        await _connection.DisposeAsync();

        // The reader learns the connection is gone (end of stream or an error), never hangs.
        var ended = await Task.WhenAny(pending, Task.Delay(Patience, Token));
        Assert.Same(pending, ended);
        if (!pending.IsFaulted)
            Assert.True((await pending).IsCompleted);
    }

    [Fact]
    public void ListenerFactory_BindsOnlyTheDatabaseEndpoints()
    {
        var database = new IPEndPoint(IPAddress.Loopback, 6432);
        var factory = ListenerFactory([database]);

        Assert.True(factory.CanBind(new IPEndPoint(IPAddress.Loopback, 6432)));
        Assert.False(factory.CanBind(new IPEndPoint(IPAddress.Loopback, 9930)));
    }

    [Fact]
    public async Task ListenerFactory_AcceptsConnectionsOfItsTransportUntilUnbound()
    {
        var factory = ListenerFactory([]);
        await using var listener = await factory.BindAsync(new IPEndPoint(IPAddress.Loopback, 0), Token);
        using var client = new Socket(SocketType.Stream, ProtocolType.Tcp);
        await client.ConnectAsync(listener.EndPoint, Token);

        var accepted = await listener.AcceptAsync(Token);
        Assert.IsType(ConnectionType, accepted);
        await client.SendAsync("hi"u8.ToArray(), SocketFlags.None, Token);
        var read = await accepted!.Transport.Input.ReadAsync(Token);
        Assert.Equal("hi", Encoding.ASCII.GetString(read.Buffer.ToArray()));
        await accepted.DisposeAsync();

        var next = listener.AcceptAsync(Token).AsTask();
        await listener.UnbindAsync(Token);
        Assert.Null(await next.WaitAsync(Patience, Token));
    }
}
