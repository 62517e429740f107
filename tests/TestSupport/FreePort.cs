using System.Net;
using System.Net.Sockets;

namespace MProxy.TestSupport;

/// <summary>
/// Loopback ports for the servers tests start (PostgreSQL, MariaDB, edges, silos, receivers).
/// </summary>
/// <remarks>
/// Not from port 0: the kernel picks those from the ephemeral range (32768–60999 by default), where it
/// also puts the local port of every outgoing connection — with hundreds of client connections
/// opening, a port seen free can be taken before the test's server binds it ("address already in
/// use", pg_ctl failing to start). These come from below that range, in turn, so one test process
/// never hands out the same port twice; each is checked free before it is handed out.
/// </remarks>
public static class FreePort
{
    private const int First = 20000;
    private const int Last = 32000;
    private static readonly Lock Gate = new();
    private static int s_next = First + Random.Shared.Next(Last - First); // test processes started together start apart

    /// <summary>A loopback port nobody listens on right now, not handed out before by this process.</summary>
    public static int Next()
    {
        lock (Gate)
        {
            for (var tried = 0; tried <= Last - First; tried++)
            {
                var port = s_next;
                s_next = port >= Last ? First : port + 1;
                if (IsFree(port))
                    return port;
            }
        }
        throw new InvalidOperationException($"no free loopback port between {First} and {Last}");
    }

    private static bool IsFree(int port)
    {
        try
        {
            using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            socket.Bind(new IPEndPoint(IPAddress.Loopback, port));
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }
}
