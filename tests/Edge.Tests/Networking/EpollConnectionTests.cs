using System.Buffers;
using System.Net;
using System.Net.Sockets;
using System.Text;
using MProxy.Edge.Configuration;
using MProxy.Edge.Networking;
using MProxy.Edge.Networking.Epoll;

namespace MProxy.Edge.Tests.Networking;

/// <summary>
/// The epoll transport passes the same contract as the direct socket transport, plus what only it
/// does itself: a flush larger than the kernel's send buffer (finished by the loop when the socket
/// turns writable), a message larger than the read buffer (grown), a read cancelled by its token,
/// many connections on one loop.
/// </summary>
public sealed class EpollConnectionTests : SocketTransportContract
{
    /// <summary>One loop for the whole test run (its thread lives as long as the process).</summary>
    private static readonly EpollTransport Transport = new(loops: 1);

    protected override INetworkConnector Connector { get; } = new EpollNetworkConnector(Transport);

    private protected override DirectSocketListenerFactory ListenerFactory(IReadOnlyCollection<EndPoint> endpoints) => new(endpoints, Transport);

    protected override Type ConnectionType => typeof(EpollConnection);

    [Fact]
    public async Task FlushAsync_MoreThanTheSocketTakes_CompletesWhenThePeerHasReadItAll()
    {
        var payload = new byte[8 * 1024 * 1024];
        new Random(7).NextBytes(payload);
        Connection.Transport.Output.Write(payload);
        var flush = Connection.Transport.Output.FlushAsync(Token).AsTask();
        await Task.Delay(100, Token);
        Assert.False(flush.IsCompleted); // 8 MB do not fit in loopback's socket buffers: the loop finishes the send

        var received = new byte[payload.Length];
        var total = 0;
        while (total < received.Length)
        {
            var n = await Peer.ReceiveAsync(received.AsMemory(total), SocketFlags.None, Token);
            Assert.NotEqual(0, n);
            total += n;
        }
        var result = await flush.WaitAsync(Patience, Token);
        Assert.False(result.IsCanceled);
        Assert.Equal(payload, received);

        Connection.Transport.Output.Write("next"u8); // the writer is usable again after the waited flush
        await Connection.Transport.Output.FlushAsync(Token);
        var next = new byte[4];
        Assert.Equal(4, await Peer.ReceiveAsync(next, SocketFlags.None, Token));
        Assert.Equal("next", Encoding.ASCII.GetString(next));
    }

    [Fact]
    public async Task FlushAsync_ManyFlushesFillingTheKernel_WhileThePeerReads_NoneWaitsForever()
    {
        // Each flush meets a full send buffer and races the loop's writability edges (counted without
        // the gate): a lost edge would leave a flush waiting with the peer reading nothing more.
        const int Flushes = 200, Size = 256 * 1024;
        var chunk = new byte[Size];
        var reader = Task.Run(async () =>
        {
            var buffer = new byte[16 * 1024];
            long total = 0, sum = 0;
            while (total < (long)Flushes * Size)
            {
                var n = await Peer.ReceiveAsync(buffer, SocketFlags.None, Token);
                Assert.NotEqual(0, n);
                for (var i = 0; i < n; i++)
                    sum += buffer[i];
                total += n;
            }
            return sum;
        }, Token);
        long expected = 0;
        for (var f = 0; f < Flushes; f++)
        {
            Array.Fill(chunk, (byte)(f % 251));
            expected += (long)(f % 251) * Size;
            Connection.Transport.Output.Write(chunk);
            var result = await Connection.Transport.Output.FlushAsync(Token).AsTask().WaitAsync(Patience, Token);
            Assert.False(result.IsCanceled);
        }
        Assert.Equal(expected, await reader.WaitAsync(Patience, Token));
    }

    [Fact]
    public async Task ReadAsync_AMessageLargerThanTheBuffer_GrowsUntilTheReaderHasItWhole()
    {
        var payload = new byte[1024 * 1024];
        new Random(11).NextBytes(payload);
        var send = Peer.SendAsync(payload, SocketFlags.None, Token).AsTask();
        while (true)
        {
            var result = await Input.ReadAsync(Token).AsTask().WaitAsync(Patience, Token);
            if (result.Buffer.Length >= payload.Length)
            {
                Assert.Equal(payload, result.Buffer.Slice(0, payload.Length).ToArray());
                Input.AdvanceTo(result.Buffer.End);
                break;
            }
            Input.AdvanceTo(result.Buffer.Start, result.Buffer.End); // nothing consumed: a framer waiting for the whole message
        }
        await send;
    }

    [Fact]
    public async Task ThePeerResets_APendingReadFailsWithTheKernelsError_AndSoDoesTheNextFlush()
    {
        // The pipes call recv and send themselves: the kernel's own error numbers must reach the
        // message (a reset read as "no data yet" would leave the read waiting forever).
        const int ConnectionReset = 104, BrokenPipe = 32;
        var pending = Input.ReadAsync(Token).AsTask();
        await Task.Delay(50, Token);
        Assert.False(pending.IsCompleted);

        Peer.LingerState = new LingerOption(enable: true, seconds: 0);
        Peer.Close(); // RST: the loop's edge reads ECONNRESET and fails the waiting read
        var read = await Assert.ThrowsAsync<IOException>(() => pending.WaitAsync(Patience, Token));
        Assert.Equal($"recv failed: errno {ConnectionReset}", read.Message);

        Connection.Transport.Output.Write("late"u8);
        var flush = await Assert.ThrowsAsync<IOException>(async () => await Connection.Transport.Output.FlushAsync(Token));
        Assert.Contains(flush.Message, new[] { $"send failed: errno {BrokenPipe}", $"send failed: errno {ConnectionReset}" });
    }

    [Fact]
    public async Task ReadAsync_TokenCancelled_ThrowsAndTheNextReadGetsTheData()
    {
        using var cancel = new CancellationTokenSource();
        var pending = Input.ReadAsync(cancel.Token).AsTask();
        await Task.Delay(50, Token);
        Assert.False(pending.IsCompleted);
        await cancel.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => pending.WaitAsync(Patience, Token));

        await Peer.SendAsync("later"u8.ToArray(), SocketFlags.None, Token);
        Assert.Equal("later", await ReadAllAvailableAsync(5));
    }

    [Fact]
    public async Task ManyConnectionsOnOneLoop_EachGetsItsOwnBytes()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        var pairs = new List<(Microsoft.AspNetCore.Connections.ConnectionContext Connection, Socket Peer)>();
        try
        {
            for (var i = 0; i < 50; i++)
            {
                var accept = listener.AcceptSocketAsync(Token);
                var connection = await Connector.ConnectAsync(new HostPort("127.0.0.1", port), Token);
                pairs.Add((connection, await accept));
            }
            await Task.WhenAll(pairs.Select(async (pair, i) =>
            {
                var text = $"connection {i:00}";
                await pair.Peer.SendAsync(Encoding.ASCII.GetBytes(text), SocketFlags.None, Token);
                var input = pair.Connection.Transport.Input;
                var got = new StringBuilder();
                while (got.Length < text.Length)
                {
                    var result = await input.ReadAsync(Token).AsTask().WaitAsync(Patience, Token);
                    got.Append(Encoding.ASCII.GetString(result.Buffer.ToArray()));
                    input.AdvanceTo(result.Buffer.End);
                }
                Assert.Equal(text, got.ToString());
                pair.Connection.Transport.Output.Write(Encoding.ASCII.GetBytes(text.ToUpperInvariant()));
                await pair.Connection.Transport.Output.FlushAsync(Token);
                var echo = new byte[text.Length];
                var n = 0;
                while (n < echo.Length)
                    n += await pair.Peer.ReceiveAsync(echo.AsMemory(n), SocketFlags.None, Token);
                Assert.Equal(text.ToUpperInvariant(), Encoding.ASCII.GetString(echo));
            }));
        }
        finally
        {
            foreach (var (connection, peer) in pairs)
            {
                await connection.DisposeAsync();
                peer.Dispose();
            }
        }
    }

    [Fact]
    public async Task ConnectAsync_NobodyListening_FailsWithASocketError()
    {
        using var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        var port = ((IPEndPoint)probe.LocalEndpoint).Port;
        probe.Stop(); // a port nobody listens on now
        await Assert.ThrowsAsync<SocketException>(async () => await Connector.ConnectAsync(new HostPort("127.0.0.1", port), Token));
    }

    [Fact]
    public async Task Listen_TheLoopAcceptsEveryClientOfABurstAndStartsEachOnItsOwnThread()
    {
        const int clients = 40;
        var listening = new Socket(SocketType.Stream, ProtocolType.Tcp);
        listening.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listening.Listen(512);
        var started = new System.Collections.Concurrent.ConcurrentQueue<(EpollConnection Connection, string? Thread)>();
        var all = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var acceptor = Transport.Listen(listening, connection =>
        {
            started.Enqueue((connection, Thread.CurrentThread.Name));
            if (started.Count == clients)
                all.TrySetResult();
        });
        var peers = new List<Socket>();
        try
        {
            for (var i = 0; i < clients; i++)
                peers.Add(new Socket(SocketType.Stream, ProtocolType.Tcp));
            await Task.WhenAll(peers.Select(p => p.ConnectAsync(acceptor.EndPoint, Token).AsTask()));
            await all.Task.WaitAsync(Patience, Token);

            // No other thread woke for them: each started on the loop that accepted it.
            Assert.All(started, s => Assert.Equal("mproxy epoll 0", s.Thread));
            // Each is a working connection to its own client.
            for (var i = 0; i < clients; i++)
                await peers[i].SendAsync(Encoding.ASCII.GetBytes($"client {i:D2}"), SocketFlags.None, Token);
            var heard = new List<string>();
            foreach (var (connection, _) in started)
            {
                var text = new StringBuilder();
                while (text.Length < 9)
                {
                    var read = await connection.Transport.Input.ReadAsync(Token);
                    text.Append(Encoding.ASCII.GetString(read.Buffer.ToArray()));
                    connection.Transport.Input.AdvanceTo(read.Buffer.End);
                }
                heard.Add(text.ToString());
            }
            Assert.Equal(Enumerable.Range(0, clients).Select(i => $"client {i:D2}"), heard.Order());
        }
        finally
        {
            acceptor.Dispose();
            foreach (var (connection, _) in started)
                await connection.DisposeAsync();
            foreach (var peer in peers)
                peer.Dispose();
        }

        // Disposed: the listening socket is closed (on the loop), so a new client is refused.
        var refused = false;
        for (var attempt = 0; attempt < 100 && !refused; attempt++)
        {
            using var late = new Socket(SocketType.Stream, ProtocolType.Tcp);
            try
            {
                await late.ConnectAsync(acceptor.EndPoint, Token);
                await Task.Delay(50, Token); // still in the backlog of a socket about to close
            }
            catch (SocketException e) when (e.SocketErrorCode is SocketError.ConnectionRefused or SocketError.ConnectionReset)
            {
                refused = true; // reset: the SYN met the listener as it closed
            }
        }
        Assert.True(refused, "the listener still accepts after Dispose");
    }

    [Fact]
    public async Task ListenerFactory_WithASession_TheLoopStartsItAndKestrelsAcceptWaitsForTheUnbind()
    {
        var session = new TaskCompletionSource<(string? Thread, string Heard)>(TaskCreationOptions.RunContinuationsAsynchronously);
        var factory = new DirectSocketListenerFactory([], Transport, _ => async connection =>
        {
            var thread = Thread.CurrentThread.Name;
            var read = await connection.Transport.Input.ReadAsync(Token);
            session.TrySetResult((thread, Encoding.ASCII.GetString(read.Buffer.ToArray())));
        });
        await using var listener = await factory.BindAsync(new IPEndPoint(IPAddress.Loopback, 0), Token);
        var accept = listener.AcceptAsync(Token).AsTask();
        using var client = new Socket(SocketType.Stream, ProtocolType.Tcp);
        await client.ConnectAsync(listener.EndPoint, Token);
        await client.SendAsync("hi"u8.ToArray(), SocketFlags.None, Token);

        var (thread, heard) = await session.Task.WaitAsync(Patience, Token);
        Assert.Equal("mproxy epoll 0", thread);
        Assert.Equal("hi", heard);
        // The session ended: its connection is closed, as Kestrel closes it after a handler.
        var buffer = new byte[1];
        Assert.Equal(0, await client.ReceiveAsync(buffer, SocketFlags.None, Token).AsTask().WaitAsync(Patience, Token));
        Assert.False(accept.IsCompleted); // Kestrel's accept loop never gets a client of its own

        await listener.UnbindAsync(Token);
        Assert.Null(await accept.WaitAsync(Patience, Token));
    }

    [Fact]
    public async Task LoopOf_NamesTheLoopWhoseThreadCompletesTheConnectionsReads()
    {
        using var transport = new EpollTransport(loops: 2);
        var connector = new EpollNetworkConnector(transport);
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        var loops = new HashSet<int>();
        for (var i = 0; i < 4; i++)
        {
            var accept = listener.AcceptSocketAsync(Token);
            var connection = await connector.ConnectAsync(new HostPort("127.0.0.1", port), Token);
            using var peer = await accept;
            var loop = EpollTransport.LoopOf(connection);
            loops.Add(loop);
            var read = connection.Transport.Input.ReadAsync(Token).AsTask();
            Assert.False(read.IsCompleted); // nothing sent yet: the loop completes it
            var thread = read.ContinueWith(_ => Thread.CurrentThread.Name, Token, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
            await peer.SendAsync("x"u8.ToArray(), SocketFlags.None, Token);
            Assert.Equal($"mproxy epoll {loop}", await thread.WaitAsync(Patience, Token));
            await connection.DisposeAsync();
        }
        Assert.Equal([0, 1], loops.Order());
        Assert.Equal(-1, EpollTransport.LoopOf(new Microsoft.AspNetCore.Connections.DefaultConnectionContext()));
    }
}
