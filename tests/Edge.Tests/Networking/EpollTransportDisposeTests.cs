using System.Net;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using MProxy.Edge.Networking.Epoll;

namespace MProxy.Edge.Tests.Networking;

/// <summary>
/// A stopped epoll transport gives back what its loops held: each loop's epoll set and wake-up
/// eventfd, and the handle that rooted the loop — an edge started and stopped in a process that
/// goes on (tests, an embedding host) leaks nothing.
/// </summary>
[Collection(RunsAlone.Name)]
public sealed class EpollTransportDisposeTests
{
    private static CancellationToken Token => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Dispose_ClosesEachLoopsDescriptors_AndTheLoopsCanBeCollected()
    {
        await StartRuntimeSocketEngineAsync();
        var before = CountDescriptors();
        var (loops, during) = ServeAndStop();
        Assert.Equal((before.EventPolls + 3, before.EventFds + 3), during); // three loops, each a set and an eventfd

        Assert.Equal(before, CountDescriptors());
        for (var i = 0; i < 10 && loops.Any(loop => loop.IsAlive); i++)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
        }
        Assert.All(loops, loop => Assert.False(loop.IsAlive, "a stopped loop is still rooted"));
    }

    [Fact]
    public async Task AStoppedTransport_RefusesNewConnections_AndClosesTheirSockets()
    {
        var transport = new EpollTransport(loops: 1);
        transport.Dispose();
        using var listener = LoopbackListener.Start();
        var connector = new EpollNetworkConnector(transport);
        var port = ((IPEndPoint)listener.LocalEndPoint!).Port;

        var refused = await Assert.ThrowsAsync<ObjectDisposedException>(async () =>
            await connector.ConnectAsync(new("127.0.0.1", port), Token));
        Assert.Contains("the epoll transport has stopped", refused.Message);
        // The socket it connected was closed, not leaked: the listener's peer sees the end of the stream.
        using var accepted = await listener.AcceptAsync(Token);
        var n = await accepted.ReceiveAsync(new byte[1], SocketFlags.None, Token).AsTask().WaitAsync(TimeSpan.FromSeconds(10), Token);
        Assert.Equal(0, n);
    }

    /// <summary>
    /// A transport of three loops, one of them parked and one connection on it that is read once
    /// and closed only after the transport stopped; answers weak references to the loops and the
    /// descriptors counted while it ran. Synchronous and not inlined, so that no local of it (nor an
    /// async method's box) keeps a loop alive.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static (WeakReference[] Loops, (int EventPolls, int EventFds) During) ServeAndStop()
    {
        var transport = new EpollTransport(loops: 3, parking: false);
        var during = CountDescriptors();
        using var listener = LoopbackListener.Start();
        using var peer = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        peer.Connect(listener.LocalEndPoint!);
        var edge = transport.Adopt(listener.Accept());
        var loop = transport.EventLoops[edge.LoopIndex];
        loop.RequestPark();
        Assert.True(SpinWait.SpinUntil(() => loop.Parked, TimeSpan.FromSeconds(10)), "the loop parked");

        peer.Send("x"u8);
        var read = edge.Transport.Input.ReadAsync(Token).AsTask().WaitAsync(TimeSpan.FromSeconds(10), Token).GetAwaiter().GetResult();
        Assert.Equal(1, read.Buffer.Length);
        edge.Transport.Input.AdvanceTo(read.Buffer.End);

        var loops = transport.EventLoops.Select(l => new WeakReference(l)).ToArray();
        transport.Dispose();
        edge.DisposeAsync().AsTask().GetAwaiter().GetResult(); // after the loops stopped: closed on this thread
        return (loops, during);
    }

    /// <summary>The runtime's own socket engine opens its epoll set at the first asynchronous socket call: before counting, not during.</summary>
    private static async Task StartRuntimeSocketEngineAsync()
    {
        using var listener = LoopbackListener.Start();
        using var peer = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        var accepting = listener.AcceptAsync(Token);
        await peer.ConnectAsync(listener.LocalEndPoint!, Token);
        using var accepted = await accepting;
    }

    /// <summary>The process's epoll sets and eventfds (the runtime's own socket engine holds some too).</summary>
    private static (int EventPolls, int EventFds) CountDescriptors()
    {
        int polls = 0, eventFds = 0;
        foreach (var fd in Directory.EnumerateFileSystemEntries("/proc/self/fd"))
        {
            var target = new FileInfo(fd).LinkTarget;
            if (target == "anon_inode:[eventpoll]")
                polls++;
            else if (target == "anon_inode:[eventfd]")
                eventFds++;
        }
        return (polls, eventFds);
    }
}
