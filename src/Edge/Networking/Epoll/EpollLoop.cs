using System.Collections.Concurrent;
using System.Runtime.InteropServices;

namespace MProxy.Edge.Networking.Epoll;

/// <summary>
/// One event-loop thread over an edge-triggered epoll set: it waits for readiness of its
/// connections' sockets and hands each event to the connection, whose waiting read or flush then
/// completes — and its continuation runs — on this thread (as PgBouncer's single loop runs
/// everything). Sockets are registered once (in, out, peer hang-up; edge-triggered), so a read or a
/// flush costs no epoll_ctl. A connection is closed on this thread, after the batch of events that
/// may still name it, so an event never reaches a closed (or reused) descriptor. A database
/// listener's socket can be in the set too (<see cref="EpollAcceptor"/>): its clients are accepted,
/// and their sessions started, on this thread.
/// </summary>
internal sealed unsafe class EpollLoop : IDisposable
{
    private const int MaxEvents = 256;
    private const ulong WakeToken = 0;

    private readonly int _epoll;
    private readonly int _wake;
    private readonly ConcurrentQueue<IEpollRegistration> _closing = new();
    private readonly Thread _thread;
    private volatile bool _stopping;
    private volatile bool _stopped;

    public EpollLoop(string name, int index)
    {
        Index = index;
        _epoll = EpollNative.epoll_create1(0);
        if (_epoll < 0)
            throw new IOException("epoll_create1 failed: errno " + Marshal.GetLastPInvokeError());
        _wake = EpollNative.eventfd(0, EpollNative.EfdNonBlock);
        if (_wake < 0)
            throw new IOException("eventfd failed: errno " + Marshal.GetLastPInvokeError());
        var ev = stackalloc byte[16];
        EpollNative.SetEvent(ev, EpollNative.EpollIn, WakeToken);
        if (EpollNative.epoll_ctl(_epoll, EpollNative.EpollCtlAdd, _wake, ev) != 0)
            throw new IOException("epoll_ctl(eventfd) failed: errno " + Marshal.GetLastPInvokeError());
        _thread = new Thread(Run) { IsBackground = true, Name = name };
        _thread.UnsafeStart();
    }

    /// <summary>The loop's place in its transport (what <see cref="EpollTransport.LoopOf"/> answers for its connections).</summary>
    public int Index { get; }

    /// <summary>Adds a connection's socket to the set; its events go to <paramref name="token"/>'s connection.</summary>
    public void Register(int fd, nint token)
    {
        var ev = stackalloc byte[16];
        EpollNative.SetEvent(ev, EpollNative.EpollIn | EpollNative.EpollOut | EpollNative.EpollRdHup | EpollNative.EpollEt, (ulong)token);
        if (EpollNative.epoll_ctl(_epoll, EpollNative.EpollCtlAdd, fd, ev) != 0)
            throw new IOException("epoll_ctl(ADD) failed: errno " + Marshal.GetLastPInvokeError());
    }

    /// <summary>Closes <paramref name="registration"/> on the loop's thread, after the current batch of events (at once once the loop has stopped).</summary>
    public void Close(IEpollRegistration registration)
    {
        _closing.Enqueue(registration);
        if (_stopped)
            DrainClosing();
        else
            Wake();
    }

    /// <summary>Stops the loop after its current batch (connections closed later are closed by their caller's thread).</summary>
    public void Dispose()
    {
        if (_stopping)
            return;
        _stopping = true;
        Wake();
        if (Thread.CurrentThread != _thread)
            _thread.Join(TimeSpan.FromSeconds(5));
    }

    private void Wake()
    {
        ulong one = 1;
        EpollNative.write(_wake, &one, sizeof(ulong));
    }

    private void DrainClosing()
    {
        lock (_closing)
        {
            while (_closing.TryDequeue(out var closing))
                closing.CloseOnLoop(_epoll);
        }
    }

    private void Run()
    {
        var events = stackalloc byte[MaxEvents * 16];
        while (!_stopping)
        {
            var n = EpollNative.epoll_wait(_epoll, events, MaxEvents, -1);
            if (n < 0)
            {
                if (Marshal.GetLastPInvokeError() == EpollNative.Eintr)
                    continue;
                Environment.FailFast("mproxy: epoll_wait failed: errno " + Marshal.GetLastPInvokeError());
            }
            for (var i = 0; i < n; i++)
            {
                var (flags, data) = EpollNative.GetEvent(events, i);
                if (data == WakeToken)
                {
                    ulong count;
                    EpollNative.read(_wake, &count, sizeof(ulong));
                    continue;
                }
                var target = GCHandle.FromIntPtr((nint)data).Target;
                if (target is not EpollConnection connection)
                {
                    (target as EpollAcceptor)?.OnAcceptable();
                    continue;
                }
                try
                {
                    connection.OnEvents(flags);
                }
                catch (Exception e)
                {
                    // A continuation that ran inline threw: that connection's problem, never the loop's.
                    connection.OnLoopFault(e);
                }
            }
            DrainClosing();
        }
        _stopped = true;
        DrainClosing();
    }
}

/// <summary>What an <see cref="EpollLoop"/>'s set holds (a connection, a listener): closed on the loop's thread.</summary>
internal interface IEpollRegistration
{
    /// <summary>On the loop's thread, after the events that may name it: leaves the set and closes its socket.</summary>
    void CloseOnLoop(int epoll);
}
