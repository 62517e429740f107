using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;
using Microsoft.Extensions.Logging;
using MProxy.Edge.Configuration;

namespace MProxy.Edge.Networking;

/// <summary>Opens outbound connections; the simulation replaces it with in-memory pipes.</summary>
public interface INetworkConnector
{
    ValueTask<ConnectionContext> ConnectAsync(HostPort endpoint, CancellationToken cancellationToken);
}

/// <summary>TCP connections with Kestrel's socket transport (pooled buffers, pipelines, no Nagle delay).</summary>
public sealed class SocketNetworkConnector(ILoggerFactory loggerFactory) : INetworkConnector, IDisposable
{
    private readonly SocketConnectionContextFactory _factory = new(
        new SocketConnectionFactoryOptions { WaitForDataBeforeAllocatingBuffer = false, UnsafePreferInlineScheduling = true },
        loggerFactory.CreateLogger<SocketNetworkConnector>());

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
        return _factory.Create(socket);
    }

    public void Dispose() => _factory.Dispose();
}
