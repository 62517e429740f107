using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;

namespace MProxy.Edge.Networking.Epoll;

/// <summary>
/// A database listener in an <see cref="EpollLoop"/>'s set: when its socket turns readable the loop
/// accepts every waiting client (until none is left: the set is edge-triggered), hands each to the
/// transport's next loop and calls <c>onAccepted</c> with it on its own thread. A new client's
/// session so starts without waking another thread — the runtime's socket engine, then the thread
/// pool twice (Kestrel's accept loop, its dispatch), did that for every connection. Disposing it
/// takes the socket out of the set, and closes it, on the loop's thread.
/// </summary>
internal sealed class EpollAcceptor : IEpollRegistration, IDisposable
{
    private static readonly TimeSpan RetryAfter = TimeSpan.FromMilliseconds(100);

    private readonly Socket _listener;
    private readonly EpollLoop _loop;
    private readonly EpollTransport _transport;
    private readonly Action<EpollConnection> _onAccepted;
    private readonly ILogger? _logger;
    private readonly GCHandle _handle;
    private volatile bool _closed;
    private int _retrying;

    /// <summary>Takes <paramref name="listener"/> (bound and listening; owned from now on) into <paramref name="loop"/>'s set.</summary>
    public EpollAcceptor(Socket listener, EpollLoop loop, EpollTransport transport, Action<EpollConnection> onAccepted, ILogger? logger)
    {
        _listener = listener;
        _loop = loop;
        _transport = transport;
        _onAccepted = onAccepted;
        _logger = logger;
        listener.Blocking = false;
        EndPoint = listener.LocalEndPoint!;
        _handle = GCHandle.Alloc(this, GCHandleType.Normal);
        loop.Register((int)listener.Handle, _handle); // frees the handle if the listener cannot join the set
    }

    public EndPoint EndPoint { get; }

    /// <summary>On the loop's thread (or a retry's): accepts until no client waits.</summary>
    internal void OnAcceptable()
    {
        while (!_closed)
        {
            Socket accepted;
            try
            {
                if (!_listener.Poll(0, SelectMode.SelectRead))
                    return;
                accepted = _listener.Accept();
            }
            catch (SocketException e) when (e.SocketErrorCode is SocketError.WouldBlock or SocketError.ConnectionAborted or SocketError.ConnectionReset or SocketError.Interrupted)
            {
                continue; // taken by a retry running at the same time, or the client gave up before it was accepted
            }
            catch (SocketException e)
            {
                RetryLater(e);
                return;
            }
            catch (ObjectDisposedException)
            {
                return; // closed under us
            }
            EpollConnection connection;
            try
            {
                accepted.NoDelay = true;
                connection = _transport.Adopt(accepted);
            }
            catch (Exception e) when (e is SocketException or IOException or ObjectDisposedException)
            {
                accepted.Dispose();
                _logger?.LogWarning("A client of {Endpoint} was dropped as it was accepted: {Error}", EndPoint, e.Message);
                continue;
            }
            try
            {
                _onAccepted(connection);
            }
            catch (Exception e)
            {
                // Never the loop's problem: that one client is closed.
                _logger?.LogError(e, "Starting the session of a client of {Endpoint} failed", EndPoint);
                _ = connection.DisposeAsync();
            }
        }
    }

    /// <summary>
    /// Out of descriptors or memory: the client stays in the kernel's backlog, but an edge-triggered
    /// set would not report it again until another client came, so accepting is tried again shortly.
    /// </summary>
    private void RetryLater(SocketException e)
    {
        if (Interlocked.Exchange(ref _retrying, 1) != 0)
            return;
        _logger?.LogWarning("Accepting clients on {Endpoint} paused for {Delay} ms: {Error}", EndPoint, RetryAfter.TotalMilliseconds, e.Message);
        _ = Task.Delay(RetryAfter).ContinueWith(static (_, state) =>
        {
            var acceptor = (EpollAcceptor)state!;
            Volatile.Write(ref acceptor._retrying, 0);
            acceptor.OnAcceptable();
        }, this, CancellationToken.None, TaskContinuationOptions.None, TaskScheduler.Default);
    }

    /// <summary>Stops accepting: the socket leaves the set and is closed on the loop's thread (clients not yet accepted are refused).</summary>
    public void Dispose()
    {
        if (_closed)
            return;
        _closed = true;
        _loop.Close(this);
    }

    public unsafe void CloseOnLoop(int epoll)
    {
        EpollNative.epoll_ctl(epoll, EpollNative.EpollCtlDel, (int)_listener.Handle, null);
        _listener.Dispose();
        _handle.Free();
    }
}
