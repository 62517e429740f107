using System.Net;
using System.Net.Sockets;
using System.IO.Pipelines;
using System.Runtime.InteropServices;
using Microsoft.AspNetCore.Connections;

namespace MProxy.Edge.Networking.Epoll;

/// <summary>
/// A TCP connection owned by an <see cref="EpollLoop"/>: its pipes call <c>recv</c> and <c>send</c>
/// on the non-blocking socket themselves and wait for the loop only when the kernel has nothing to
/// read or no room to write. A read that drained the socket (fewer bytes than asked for) waits for
/// the next edge without trying again, so a read costs one <c>recv</c>, as in PgBouncer. Same
/// contract as <see cref="DirectSocketConnection"/>: one reader, one writer at a time,
/// <see cref="PipeReader.CancelPendingRead"/> ends a pending read, a flush completes when the
/// kernel has every byte, <see cref="SocketConnection.Abort"/> shuts the socket down under whoever uses it.
/// </summary>
/// <remarks>
/// The socket is never used through the runtime's async socket API, which would register it with
/// the runtime's own epoll thread as well: it is accepted (by the listener) or connected (blocking,
/// see <see cref="EpollNetworkConnector"/>) before it is handed over.
/// </remarks>
internal sealed class EpollConnection : SocketConnection, IEpollRegistration
{
    private readonly EpollLoop _loop;
    private readonly GCHandle _handle;
    private readonly EpollPipeReader _reader;
    private readonly EpollPipeWriter _writer;

    public EpollConnection(Socket socket, EpollLoop loop, EndPoint? remote = null)
        : base(socket, remote)
    {
        _loop = loop;
        socket.Blocking = false;
        Fd = (int)socket.Handle;
        _reader = new EpollPipeReader(this);
        _writer = new EpollPipeWriter(this);
        _handle = GCHandle.Alloc(this, GCHandleType.Normal);
        loop.Register(Fd, _handle); // frees the handle if the socket cannot join the set
    }

    internal int Fd { get; }

    /// <summary>The index of the loop that owns the socket.</summary>
    internal int LoopIndex => _loop.Index;

    public override PipeReader Input => _reader;

    public override PipeWriter Output => _writer;

    /// <summary>The loop saw readiness (or an error or hang-up) on the socket.</summary>
    internal void OnEvents(uint events)
    {
        if ((events & (EpollNative.EpollIn | EpollNative.EpollRdHup | EpollNative.EpollHup | EpollNative.EpollErr)) != 0)
            _reader.OnReadable(hangup: (events & (EpollNative.EpollRdHup | EpollNative.EpollHup | EpollNative.EpollErr)) != 0);
        if ((events & (EpollNative.EpollOut | EpollNative.EpollHup | EpollNative.EpollErr)) != 0)
            _writer.OnWritable();
    }

    internal void OnLoopFault(Exception e) => Abort(new ConnectionAbortedException("an inline continuation failed", e));

    /// <remarks>The loop closes it after the batch of events that may still name it (a shut-down socket reports a hang-up first).</remarks>
    protected override ValueTask CloseAsync()
    {
        _loop.Close(this);
        return ValueTask.CompletedTask;
    }

    /// <summary>On the loop's thread, after the events that may name this connection: releases waiters, closes the socket.</summary>
    public unsafe void CloseOnLoop(int epoll)
    {
        _reader.OnClosed();
        _writer.OnClosed();
        EpollNative.epoll_ctl(epoll, EpollNative.EpollCtlDel, Fd, null);
        Socket.Dispose();
        _handle.Free();
    }
}
