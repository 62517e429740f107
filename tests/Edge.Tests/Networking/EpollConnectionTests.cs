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
}
