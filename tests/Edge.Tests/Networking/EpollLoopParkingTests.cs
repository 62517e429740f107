using System.Buffers;
using System.Net;
using System.Net.Sockets;
using System.Text;
using MProxy.Edge.Networking.Epoll;
using MProxy.TestSupport;

namespace MProxy.Edge.Tests.Networking;

/// <summary>
/// Parking the epoll transport's loops: a parked loop's sockets are served by the first loop's
/// thread (reads, waited flushes, closes), come back to their own thread when it returns, and the
/// policy parks a loop that has time to spare by itself.
/// </summary>
public sealed class EpollLoopParkingTests : IAsyncDisposable
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(10);
    private readonly Socket _listener = new(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
    private readonly List<Socket> _peers = [];
    private readonly List<EpollConnection> _edges = [];

    public EpollLoopParkingTests()
    {
        _listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        _listener.Listen(16);
    }

    private static CancellationToken Token => TestContext.Current.CancellationToken;

    public async ValueTask DisposeAsync()
    {
        foreach (var edge in _edges)
            await edge.DisposeAsync();
        foreach (var peer in _peers)
            peer.Dispose();
        _listener.Dispose();
    }

    /// <summary>A connected pair: the edge's side adopted by <paramref name="transport"/> (on its next loop), the peer a plain socket.</summary>
    private async Task<(EpollConnection Edge, Socket Peer)> ConnectAsync(EpollTransport transport)
    {
        var peer = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        _peers.Add(peer);
        await peer.ConnectAsync(_listener.LocalEndPoint!, Token);
        var accepted = await _listener.AcceptAsync(Token);
        var edge = transport.Adopt(accepted);
        _edges.Add(edge);
        return (edge, peer);
    }

    /// <summary>Waits for the next read with its continuation run inline, and answers which thread completed it.</summary>
    private static async Task<(string Text, string? Thread)> ReadOnceAsync(EpollConnection edge)
    {
        var result = await edge.Transport.Input.ReadAsync(Token).ConfigureAwait(false);
        var thread = System.Threading.Thread.CurrentThread.Name;
        var text = Encoding.ASCII.GetString(result.Buffer.ToArray());
        edge.Transport.Input.AdvanceTo(result.Buffer.End);
        return (text, thread);
    }

    [Fact]
    public async Task ParkedLoop_ItsSocketsServedByTheFirstLoop_UntilItComesBack()
    {
        using var transport = new EpollTransport(loops: 2, parking: false); // parked only when asked
        var (edge, peer) = await ConnectAsync(transport);
        var loop = transport.EventLoops[edge.LoopIndex];
        Assert.Equal(1, edge.LoopIndex); // the transport's first adoption goes to its second loop

        var read = ReadOnceAsync(edge); // waiting in the loop's set before it parks: the wait carries over
        loop.RequestPark();
        await Poll.UntilAsync(() => loop.Parked, "the loop parked");
        Assert.Equal(1, transport.LoopsServing);
        await peer.SendAsync("parked"u8.ToArray(), SocketFlags.None, Token);
        var (text, thread) = await read.WaitAsync(Patience, Token);
        Assert.Equal("parked", text);
        Assert.Equal("mproxy epoll 0", thread);

        // A flush the kernel cannot take at once waits for writability, which the first loop hears too.
        var payload = new byte[8 * 1024 * 1024];
        new Random(3).NextBytes(payload);
        edge.Transport.Output.Write(payload);
        var flush = edge.Transport.Output.FlushAsync(Token).AsTask();
        var received = new byte[payload.Length];
        for (var total = 0; total < received.Length;)
        {
            var n = await peer.ReceiveAsync(received.AsMemory(total), SocketFlags.None, Token);
            Assert.NotEqual(0, n);
            total += n;
        }
        Assert.False((await flush.WaitAsync(Patience, Token)).IsCanceled);
        Assert.Equal(payload, received);

        transport.EventLoops[0].RequestUnpark();
        await Poll.UntilAsync(() => !loop.Parked, "the loop came back");
        Assert.Equal(2, transport.LoopsServing);
        read = ReadOnceAsync(edge);
        await peer.SendAsync("back"u8.ToArray(), SocketFlags.None, Token);
        (text, thread) = await read.WaitAsync(Patience, Token);
        Assert.Equal("back", text);
        Assert.Equal("mproxy epoll 1", thread);
    }

    [Fact]
    public async Task ParkedLoop_AConnectionClosed_IsClosedByTheFirstLoop()
    {
        using var transport = new EpollTransport(loops: 2, parking: false);
        var (edge, peer) = await ConnectAsync(transport);
        var loop = transport.EventLoops[edge.LoopIndex];
        loop.RequestPark();
        await Poll.UntilAsync(() => loop.Parked, "the loop parked");

        var pending = edge.Transport.Input.ReadAsync(Token).AsTask();
        await edge.DisposeAsync();
        // Only the first loop's thread can end the waiting read now (the hang-up's edge, or the close).
        Assert.True((await pending.WaitAsync(Patience, Token)).IsCompleted);
        var buffer = new byte[16];
        var n = await peer.ReceiveAsync(buffer, SocketFlags.None, Token).AsTask().WaitAsync(Patience, Token);
        Assert.Equal(0, n); // the peer sees the end of the stream
    }

    [Fact]
    public async Task Dispose_WithALoopParked_StopsEveryLoop()
    {
        var transport = new EpollTransport(loops: 3, parking: false);
        var (edge, _) = await ConnectAsync(transport);
        var loop = transport.EventLoops[edge.LoopIndex];
        loop.RequestPark();
        await Poll.UntilAsync(() => loop.Parked, "the loop parked");

        var pending = edge.Transport.Input.ReadAsync(Token).AsTask();
        var disposing = Task.Run(transport.Dispose, Token);
        await disposing.WaitAsync(Patience, Token); // a parked thread wakes for its stop instead of waiting forever
        await edge.DisposeAsync(); // closed by the caller now that the loops have stopped
        var result = await pending.WaitAsync(Patience, Token);
        Assert.True(result.IsCompleted);
    }

    [Fact]
    public async Task ALoopAskedToPark_AfterTheFirstStopped_KeepsServingItsOwnSet()
    {
        using var transport = new EpollTransport(loops: 2, parking: false);
        var (edge, peer) = await ConnectAsync(transport);
        var loop = transport.EventLoops[edge.LoopIndex];
        transport.EventLoops[0].Dispose(); // as the transport's Dispose does first: the first loop's set is closed

        // Parking now would put this loop's set into a closed one (the process used to fail fast there).
        loop.RequestPark();
        var read = ReadOnceAsync(edge);
        await peer.SendAsync("still served"u8.ToArray(), SocketFlags.None, Token);
        var (text, thread) = await read.WaitAsync(Patience, Token);
        Assert.Equal("still served", text);
        Assert.Equal("mproxy epoll 1", thread);
        Assert.False(loop.Parked);
    }

    [Fact]
    public async Task Policy_ALoopWithTimeToSpare_ParksByItself()
    {
        using var transport = new EpollTransport(loops: 2, parking: true);
        var (edge, peer) = await ConnectAsync(transport);
        var loop = transport.EventLoops[edge.LoopIndex];
        Assert.Equal(1, loop.Index);

        // Light traffic: every message wakes the loop, so it sleeps about once per event.
        var deadline = DateTime.UtcNow + Patience;
        while (!loop.Parked)
        {
            Assert.True(DateTime.UtcNow < deadline, "the loop never parked");
            var read = ReadOnceAsync(edge);
            await peer.SendAsync("ping"u8.ToArray(), SocketFlags.None, Token);
            Assert.Equal("ping", (await read.WaitAsync(Patience, Token)).Text);
            await Task.Delay(20, Token);
        }
        Assert.Equal(1, transport.Parking.Parks);
        Assert.Equal(1, transport.LoopsServing);

        var again = ReadOnceAsync(edge); // and its socket is still served
        await peer.SendAsync("pong"u8.ToArray(), SocketFlags.None, Token);
        var (text, thread) = await again.WaitAsync(Patience, Token);
        Assert.Equal("pong", text);
        Assert.Equal("mproxy epoll 0", thread);
    }

    [Fact]
    public void Decisions_FollowTheThresholds()
    {
        Assert.Equal(double.PositiveInfinity, EpollLoopParking.SleepsPerEvent(3, 0));
        Assert.Equal(0.25, EpollLoopParking.SleepsPerEvent(1, 4));

        // Park only when both the loop and the first have time to spare.
        Assert.True(EpollLoopParking.ShouldPark(0.2, double.PositiveInfinity));
        Assert.False(EpollLoopParking.ShouldPark(0.2, 0.01));
        Assert.False(EpollLoopParking.ShouldPark(0.01, 0.2));
        // Come back only when the first loop never sleeps, under more than light load.
        Assert.True(EpollLoopParking.ShouldUnpark(0.001, EpollLoopParking.MinEventsToUnpark));
        Assert.False(EpollLoopParking.ShouldUnpark(0.001, EpollLoopParking.MinEventsToUnpark - 1));
        Assert.False(EpollLoopParking.ShouldUnpark(0.02, 1_000_000));
        // Between the thresholds neither happens: no flapping.
        var between = (EpollLoopParking.SaturatedBelow + EpollLoopParking.SpareAbove) / 2;
        Assert.False(EpollLoopParking.ShouldPark(between, between));
        Assert.False(EpollLoopParking.ShouldUnpark(between, 1_000_000));
    }

    [Fact]
    public void TryClaimChange_OnePerDwell()
    {
        var parking = new EpollLoopParking(enabled: true);
        Assert.True(parking.TryClaimChange(1_000, park: true));
        Assert.False(parking.TryClaimChange(1_000 + EpollLoopParking.DwellMs - 1, park: false));
        Assert.True(parking.TryClaimChange(1_000 + EpollLoopParking.DwellMs, park: false));
        Assert.Equal(1, parking.Parks);
        Assert.Equal(1, parking.Unparks);
    }
}
