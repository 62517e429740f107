using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace MProxy.Bench.RelayFloor;

/// <summary>
/// The same plain relay with the runtime's socket engine taken out: one thread, level-triggered
/// epoll and <c>recv</c>/<c>send</c> called directly on the descriptors — the shape of PgBouncer's
/// event loop, written in C#. Sockets are accepted and connected with blocking .NET calls (never an
/// async one, so the runtime never registers them with its own epoll) and then owned by the loop.
/// Linux x86-64 only; a measurement tool, not a transport.
/// </summary>
internal static class EpollRelay
{
    private const int EpollCtlAdd = 1;
    private const uint EpollIn = 0x001;
    private const int Eagain = 11;
    private const int Eintr = 4;
    private const int FGetFl = 3;
    private const int FSetFl = 4;
    private const int ONonBlock = 0x800;
    private const int MsgNoSignal = 0x4000;

    [StructLayout(LayoutKind.Sequential, Pack = 1)]
    private struct EpollEvent
    {
        public uint Events;
        public ulong Data;
    }

    [DllImport("libc", SetLastError = true)]
    private static extern int epoll_create1(int flags);

    [DllImport("libc", SetLastError = true)]
    private static extern int epoll_ctl(int epfd, int op, int fd, ref EpollEvent ev);

    [DllImport("libc", SetLastError = true)]
    private static extern unsafe int epoll_wait(int epfd, EpollEvent* events, int maxEvents, int timeout);

    [DllImport("libc", SetLastError = true)]
    private static extern unsafe nint recv(int fd, byte* buffer, nint length, int flags);

    [DllImport("libc", SetLastError = true)]
    private static extern unsafe nint send(int fd, byte* buffer, nint length, int flags);

    [DllImport("libc", SetLastError = true)]
    private static extern int fcntl(int fd, int cmd, int arg);

    private static readonly object Gate = new();
    private static readonly Dictionary<int, (Socket Self, int Peer)> Pairs = [];
    private static int _epoll;

    public static void Run(int listenPort, EndPoint server)
    {
        _epoll = epoll_create1(0);
        if (_epoll < 0)
            throw new InvalidOperationException("epoll_create1 failed: " + Marshal.GetLastPInvokeError());
        var loop = new Thread(Loop) { IsBackground = true, Name = "epoll relay" };
        loop.Start();
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, listenPort));
        listener.Listen(1024);
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
            Register(a);
            Register(b);
        }
    }

    private static void Register(int fd)
    {
        fcntl(fd, FSetFl, fcntl(fd, FGetFl, 0) | ONonBlock);
        var ev = new EpollEvent { Events = EpollIn, Data = (ulong)fd };
        if (epoll_ctl(_epoll, EpollCtlAdd, fd, ref ev) != 0)
            throw new InvalidOperationException("epoll_ctl failed: " + Marshal.GetLastPInvokeError());
    }

    private static unsafe void Loop()
    {
        var events = stackalloc EpollEvent[256];
        var buffer = new byte[16 * 1024];
        fixed (byte* data = buffer)
        {
            while (true)
            {
                var n = epoll_wait(_epoll, events, 256, -1);
                if (n < 0)
                {
                    if (Marshal.GetLastPInvokeError() == Eintr)
                        continue;
                    throw new InvalidOperationException("epoll_wait failed: " + Marshal.GetLastPInvokeError());
                }
                for (var i = 0; i < n; i++)
                {
                    var fd = (int)events[i].Data;
                    (Socket Self, int Peer) pair;
                    lock (Gate)
                    {
                        if (!Pairs.TryGetValue(fd, out pair))
                            continue;
                    }
                    var read = recv(fd, data, buffer.Length, 0);
                    if (read < 0 && Marshal.GetLastPInvokeError() == Eagain)
                        continue;
                    if (read <= 0 || !SendAll(pair.Peer, data, read))
                        Close(fd);
                }
            }
        }
    }

    /// <summary>Sends everything; a full socket buffer (never seen with these small messages) is waited out.</summary>
    private static unsafe bool SendAll(int fd, byte* data, nint length)
    {
        while (length > 0)
        {
            var sent = send(fd, data, length, MsgNoSignal);
            if (sent < 0)
            {
                if (Marshal.GetLastPInvokeError() != Eagain)
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
