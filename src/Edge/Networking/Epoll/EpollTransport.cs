using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.Logging;
using MProxy.Edge.Configuration;

namespace MProxy.Edge.Networking.Epoll;

/// <summary>
/// The edge's own transport for database connections (<c>network.transport: epoll</c>): a fixed
/// set of <see cref="EpollLoop"/> threads, connections spread over them in turn; with parking on,
/// the loops beyond the first park while the first can serve their sets
/// too (<see cref="EpollLoopParking"/>). Linux only.
/// </summary>
internal sealed class EpollTransport : IDisposable
{
    private readonly EpollLoop[] _loops;
    private int _next;

    public EpollTransport(int loops, bool parking = false)
    {
        if (!EpollNative.IsSupported)
            throw new PlatformNotSupportedException("the epoll transport needs Linux on x86-64 or arm64");
        Parking = new EpollLoopParking(parking && loops > 1);
        _loops = new EpollLoop[Math.Max(1, loops)];
        for (var i = 0; i < _loops.Length; i++)
            _loops[i] = new EpollLoop($"mproxy epoll {i}", i, i == 0 ? null : _loops[0], Parking);
    }

    public int Loops => _loops.Length;

    /// <summary>The parking policy and its counts.</summary>
    public EpollLoopParking Parking { get; }

    /// <summary>The loops by index (parking and its metrics, tests).</summary>
    internal IReadOnlyList<EpollLoop> EventLoops => _loops;

    /// <summary>Loops whose own threads serve their sets now (the others are parked).</summary>
    public int LoopsServing
    {
        get
        {
            var serving = 0;
            foreach (var loop in _loops)
                serving += loop.Parked ? 0 : 1;
            return serving;
        }
    }

    /// <summary>The loop whose thread completes <paramref name="connection"/>'s reads and flushes (-1: not a connection of the epoll transport).</summary>
    public static int LoopOf(ConnectionContext connection) => connection is EpollConnection epoll ? epoll.LoopIndex : -1;

    /// <summary>Stops the loops (when the host stops, after the pools closed their connections): the first before the others, so that no parked loop's set is served after its own loop stopped.</summary>
    public void Dispose()
    {
        foreach (var loop in _loops)
            loop.Dispose();
    }

    /// <summary>Hands an accepted or connected socket (never used asynchronously) to the next loop.</summary>
    public EpollConnection Adopt(Socket socket, EndPoint? remote = null) => new(socket, NextLoop(), remote);

    /// <summary>
    /// Puts a bound, listening socket (never used asynchronously) in the next loop's set: that loop
    /// accepts its clients, spreads them over the loops and calls <paramref name="onAccepted"/> with
    /// each on its own thread. Disposing the acceptor stops it.
    /// </summary>
    public EpollAcceptor Listen(Socket listener, Action<EpollConnection> onAccepted, ILogger? logger = null) =>
        new(listener, NextLoop(), this, onAccepted, logger);

    private EpollLoop NextLoop() => _loops[(int)((uint)Interlocked.Increment(ref _next) % (uint)_loops.Length)];
}

/// <summary>
/// Outbound connections on the epoll transport. The connect itself is a blocking call on a
/// thread-pool thread (bounded by the caller's token, which closes the socket): the runtime's async
/// connect would register the socket with the runtime's epoll thread too, which then wakes for every
/// packet. Server connections are opened rarely (pool growth), so the blocked thread is brief.
/// </summary>
internal sealed class EpollNetworkConnector(EpollTransport transport) : INetworkConnector
{
    public async ValueTask<ConnectionContext> ConnectAsync(HostPort endpoint, CancellationToken cancellationToken)
    {
        var addresses = IPAddress.TryParse(endpoint.Host, out var literal)
            ? [literal]
            : await Dns.GetHostAddressesAsync(endpoint.Host, cancellationToken);
        Exception? last = null;
        foreach (var address in addresses)
        {
            var socket = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            var target = new IPEndPoint(address, endpoint.Port);
            try
            {
                using (cancellationToken.UnsafeRegister(static s => ((Socket)s!).Dispose(), socket))
                    await Task.Run(() => socket.Connect(target), CancellationToken.None);
                cancellationToken.ThrowIfCancellationRequested();
                return transport.Adopt(socket, target);
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException or OperationCanceledException or IOException)
            {
                socket.Dispose();
                cancellationToken.ThrowIfCancellationRequested();
                last = e;
            }
        }
        // The last address's failure (a stopped transport, the edge shutting down, says so rather than blame the host).
        throw last ?? new SocketException((int)SocketError.HostNotFound);
    }
}
