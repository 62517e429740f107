using MProxy.Bench.RelayFloor;
using System.Net;
using System.Net.Sockets;

// The least a .NET proxy can do per round trip: accept a client, open one server connection for it,
// and copy bytes both ways with Socket.ReceiveAsync/SendAsync into one fixed buffer per direction.
// No framing, no pool, no telemetry, no pipes. With the same runtime settings as the edge (socket
// completions inline on the socket engine's threads, no thread-pool spinning), its CPU per
// transaction is the floor under any proxy built on this socket stack (bench/floor.sh).
//
// With --epoll, the runtime's socket engine is taken out too (EpollRelay: one thread, level-triggered
// epoll, recv/send called directly): how much of the floor is the runtime's socket path.
//
// Usage: relay-floor [--epoll] LISTEN_PORT SERVER_HOST SERVER_PORT

var epoll = args.Length > 0 && args[0] == "--epoll";
if (epoll)
    args = args[1..];
if (Environment.GetEnvironmentVariable("DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS") is null)
    Environment.SetEnvironmentVariable("DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS", "1");

if (args.Length != 3 || !int.TryParse(args[0], out var listenPort) || !int.TryParse(args[2], out var serverPort))
{
    Console.Error.WriteLine("usage: relay-floor [--epoll] LISTEN_PORT SERVER_HOST SERVER_PORT");
    return 2;
}
var server = new DnsEndPoint(args[1], serverPort);
if (epoll)
{
    EpollRelay.Run(listenPort, server);
    return 0;
}
using var listener = EpollRelay.Listen(listenPort);
Console.WriteLine($"relay-floor: 127.0.0.1:{listenPort} -> {args[1]}:{serverPort}");
while (true)
{
    var client = await listener.AcceptAsync();
    _ = RelayAsync(client, server);
}

static async Task RelayAsync(Socket client, EndPoint serverEndPoint)
{
    using var _ = client;
    using var server = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
    client.NoDelay = true;
    try
    {
        await server.ConnectAsync(serverEndPoint);
        await Task.WhenAny(CopyAsync(client, server), CopyAsync(server, client));
    }
    catch (SocketException)
    {
        // either side went away
    }
}

static async Task CopyAsync(Socket from, Socket to)
{
    var buffer = new byte[16 * 1024];
    try
    {
        while (true)
        {
            var read = await from.ReceiveAsync(buffer.AsMemory(), SocketFlags.None);
            if (read == 0)
                break;
            var sent = 0;
            while (sent < read)
                sent += await to.SendAsync(buffer.AsMemory(sent, read - sent), SocketFlags.None);
        }
    }
    catch (Exception e) when (e is SocketException or ObjectDisposedException)
    {
        // closed
    }
    from.Close();
    to.Close();
}
