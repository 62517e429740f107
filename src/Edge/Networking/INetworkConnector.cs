using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Connections;
using MProxy.Edge.Configuration;

namespace MProxy.Edge.Networking;

/// <summary>Opens outbound connections; the simulation replaces it with in-memory pipes.</summary>
public interface INetworkConnector
{
    ValueTask<ConnectionContext> ConnectAsync(HostPort endpoint, CancellationToken cancellationToken);
}

/// <summary>TCP connections (no Nagle delay) read and written directly: <see cref="DirectSocketConnection"/>.</summary>
public sealed class SocketNetworkConnector : INetworkConnector
{
    public async ValueTask<ConnectionContext> ConnectAsync(HostPort endpoint, CancellationToken cancellationToken)
    {
        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            if (IPAddress.TryParse(endpoint.Host, out var address))
                await socket.ConnectAsync(new IPEndPoint(address, endpoint.Port), cancellationToken);
            else
                await socket.ConnectAsync(new DnsEndPoint(endpoint.Host, endpoint.Port), cancellationToken);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
        return new DirectSocketConnection(socket);
    }
}
