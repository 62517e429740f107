using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Connections;

namespace MProxy.Edge.Networking;

/// <summary>
/// Kestrel's transport for the database listeners: accepted clients are <see cref="DirectSocketConnection"/>s,
/// or — with <paramref name="epoll"/> — connections of the edge's own epoll transport.
/// Other endpoints (the admin HTTP listener) stay on Kestrel's socket transport.
/// </summary>
internal sealed class DirectSocketListenerFactory(IReadOnlyCollection<EndPoint> endpoints, Epoll.EpollTransport? epoll = null) : IConnectionListenerFactory, IConnectionListenerFactorySelector
{
    public bool CanBind(EndPoint endpoint) => endpoints.Contains(endpoint);

    public ValueTask<IConnectionListener> BindAsync(EndPoint endpoint, CancellationToken cancellationToken = default)
    {
        var socket = new Socket(endpoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            if (endpoint is IPEndPoint { Address.AddressFamily: AddressFamily.InterNetworkV6 } v6 && v6.Address.Equals(IPAddress.IPv6Any))
                socket.DualMode = true;
            socket.Bind(endpoint);
            socket.Listen(512);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
        return new ValueTask<IConnectionListener>(new Listener(socket, epoll));
    }

    private sealed class Listener(Socket socket, Epoll.EpollTransport? epoll) : IConnectionListener
    {
        public EndPoint EndPoint { get; } = socket.LocalEndPoint!;

        public async ValueTask<ConnectionContext?> AcceptAsync(CancellationToken cancellationToken = default)
        {
            while (true)
            {
                Socket accepted;
                try
                {
                    accepted = await socket.AcceptAsync(cancellationToken);
                }
                catch (Exception e) when (e is ObjectDisposedException || (e is SocketException { SocketErrorCode: SocketError.OperationAborted or SocketError.Interrupted }))
                {
                    return null; // unbound
                }
                catch (SocketException)
                {
                    continue; // the client reset before it was accepted
                }
                accepted.NoDelay = true;
                return epoll is null ? new DirectSocketConnection(accepted) : epoll.Adopt(accepted);
            }
        }

        public ValueTask UnbindAsync(CancellationToken cancellationToken = default)
        {
            socket.Dispose();
            return ValueTask.CompletedTask;
        }

        public ValueTask DisposeAsync()
        {
            socket.Dispose();
            return ValueTask.CompletedTask;
        }
    }
}
