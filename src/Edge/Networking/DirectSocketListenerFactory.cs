using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.Logging;

namespace MProxy.Edge.Networking;

/// <summary>
/// Kestrel's transport for the database listeners: accepted clients are <see cref="DirectSocketConnection"/>s,
/// or — with <paramref name="epoll"/> — connections of the edge's own epoll transport.
/// Other endpoints (the admin HTTP listener) stay on Kestrel's socket transport.
/// </summary>
/// <remarks>
/// With the epoll transport and a session for the endpoint (<paramref name="sessions"/>), the loops
/// accept the clients themselves and start each one's session on the accepting loop's thread
/// (<see cref="Epoll.EpollAcceptor"/>); Kestrel then only binds and unbinds the listener, and its
/// accept loop waits until the unbind. Otherwise Kestrel's accept loop takes each client.
/// </remarks>
internal sealed class DirectSocketListenerFactory(
    IReadOnlyCollection<EndPoint> endpoints,
    Epoll.EpollTransport? epoll = null,
    Func<EndPoint, Func<ConnectionContext, Task>?>? sessions = null,
    ILogger? logger = null) : IConnectionListenerFactory, IConnectionListenerFactorySelector
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
            if (epoll is not null && sessions?.Invoke(endpoint) is { } session)
                return new ValueTask<IConnectionListener>(new LoopListener(epoll.Listen(socket, connection => _ = RunAsync(session, connection, logger), logger)));
        }
        catch
        {
            socket.Dispose();
            throw;
        }
        return new ValueTask<IConnectionListener>(new Listener(socket, epoll));
    }

    /// <summary>What Kestrel does around a connection handler: runs it, then disposes the connection.</summary>
    private static async Task RunAsync(Func<ConnectionContext, Task> session, ConnectionContext connection, ILogger? logger)
    {
        try
        {
            await session(connection);
        }
        catch (Exception e)
        {
            logger?.LogError(e, "The session of client {Client} failed", connection.RemoteEndPoint);
        }
        finally
        {
            await connection.DisposeAsync();
        }
    }

    /// <summary>A listener whose clients the epoll loops accept and start: Kestrel's accept loop waits here until the unbind.</summary>
    private sealed class LoopListener(Epoll.EpollAcceptor acceptor) : IConnectionListener
    {
        private readonly TaskCompletionSource<ConnectionContext?> _unbound = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public EndPoint EndPoint => acceptor.EndPoint;

        public ValueTask<ConnectionContext?> AcceptAsync(CancellationToken cancellationToken = default) =>
            new(_unbound.Task.WaitAsync(cancellationToken));

        public ValueTask UnbindAsync(CancellationToken cancellationToken = default)
        {
            acceptor.Dispose();
            _unbound.TrySetResult(null);
            return ValueTask.CompletedTask;
        }

        public ValueTask DisposeAsync() => UnbindAsync();
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
                if (epoll is null)
                    return new DirectSocketConnection(accepted);
                try
                {
                    return epoll.Adopt(accepted);
                }
                catch (ObjectDisposedException)
                {
                    accepted.Dispose();
                    return null; // the epoll transport has stopped: so has this listener
                }
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
