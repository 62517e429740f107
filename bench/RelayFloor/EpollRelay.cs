using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using MProxy.Edge.Networking.Epoll;

namespace MProxy.Bench.RelayFloor;

/// <summary>
/// The same plain relay with the runtime's socket engine taken out: one thread, level-triggered
/// epoll and <c>recv</c>/<c>send</c> called directly on the descriptors — the shape of PgBouncer's
/// event loop, written in C#. Sockets are accepted and connected with blocking .NET calls (never an
/// async one, so the runtime never registers them with its own epoll) and then owned by the loop.
/// The system calls are the edge's own (<see cref="EpollNative"/>); the rest is independent of the
/// edge. Linux only; a measurement tool, not a transport.
/// </summary>
internal static unsafe class EpollRelay
{
    private static readonly object Gate = new();
    private static readonly Dictionary<int, (Socket Self, int Peer)> Pairs = [];
    private static int _epoll;

    public static void Run(int listenPort, EndPoint server)
    {
        _epoll = EpollNative.epoll_create1(0);
        if (_epoll < 0)
            throw new InvalidOperationException("epoll_create1 failed: " + Marshal.GetLastPInvokeError());
        var loop = new Thread(Loop) { IsBackground = true, Name = "epoll relay" };
        loop.Start();
        using var listener = Listen(listenPort);
        Console.WriteLine($"relay-floor --epoll: 127.0.0.1:{listenPort} -> {server}");
        while (true)
        {
            var client = listener.Accept();
            var upstream = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            client.NoDelay = true;
            try
            {
                upstream.Connect(server);
            }
            catch (SocketException)
            {
                client.Dispose();
                upstream.Dispose();
                continue;
            }
            var a = (int)client.SafeHandle.DangerousGetHandle();
            var b = (int)upstream.SafeHandle.DangerousGetHandle();
            lock (Gate)
            {
                Pairs[a] = (client, b);
                Pairs[b] = (upstream, a);
            }
            Register(client, a);
            Register(upstream, b);
        }
    }

    /// <summary>A listening socket on the loopback port (both relays).</summary>
    public static Socket Listen(int port)
    {
        var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, port));
        listener.Listen(1024);
        return listener;
    }

    /// <summary>Level-triggered readability: every event is one recv.</summary>
    private static void Register(Socket socket, int fd)
    {
        socket.Blocking = false;
        var ev = stackalloc byte[16];
        EpollNative.SetEvent(ev, EpollNative.EpollIn, (ulong)fd);
        if (EpollNative.epoll_ctl(_epoll, EpollNative.EpollCtlAdd, fd, ev) != 0)
            throw new InvalidOperationException("epoll_ctl failed: " + Marshal.GetLastPInvokeError());
    }

    private static void Loop()
    {
        var events = stackalloc byte[256 * 16];
        var buffer = new byte[16 * 1024];
        fixed (byte* data = buffer)
        {
            while (true)
            {
                var n = EpollNative.epoll_wait(_epoll, events, 256, -1);
                if (n < 0)
                {
                    if (Marshal.GetLastPInvokeError() == EpollNative.Eintr)
                        continue;
                    throw new InvalidOperationException("epoll_wait failed: " + Marshal.GetLastPInvokeError());
                }
                for (var i = 0; i < n; i++)
                {
                    var fd = (int)EpollNative.GetEvent(events, i).Data;
                    (Socket Self, int Peer) pair;
                    lock (Gate)
                    {
                        if (!Pairs.TryGetValue(fd, out pair))
                            continue;
                    }
                    var read = EpollNative.recv(fd, data, buffer.Length, 0);
                    if (read < 0 && Marshal.GetLastPInvokeError() == EpollNative.Eagain)
                        continue;
                    if (read <= 0 || !SendAll(pair.Peer, data, read))
                        Close(fd);
                }
            }
        }
    }

    /// <summary>Sends everything; a full socket buffer (never seen with these small messages) is waited out.</summary>
    private static bool SendAll(int fd, byte* data, nint length)
    {
        while (length > 0)
        {
            var sent = EpollNative.send(fd, data, length, EpollNative.MsgNoSignal);
            if (sent < 0)
            {
                if (Marshal.GetLastPInvokeError() != EpollNative.Eagain)
                    return false;
                Thread.Yield();
                continue;
            }
            data += sent;
            length -= sent;
        }
        return true;
    }

    private static void Close(int fd)
    {
        lock (Gate)
        {
            if (!Pairs.Remove(fd, out var pair))
                return;
            Pairs.Remove(pair.Peer, out var peer);
            pair.Self.Dispose();   // closing a descriptor removes it from the epoll set
            peer.Self?.Dispose();
        }
    }
}
