using System.Net;
using System.Net.Sockets;

namespace MProxy.Edge.Tests.Networking;

/// <summary>A TCP listener on a loopback port the kernel picks, for tests that connect to themselves.</summary>
internal static class LoopbackListener
{
    public static Socket Start(int backlog = 1)
    {
        var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(backlog);
        return listener;
    }
}
