using System.Collections.Concurrent;
using System.Runtime.InteropServices;

namespace MProxy.Edge.Networking.Epoll;

/// <summary>
/// One event-loop thread over an edge-triggered epoll set: it waits for readiness of its
/// connections' sockets and hands each event to the connection, whose waiting read or flush then
/// completes — and its continuation runs — on this thread (as PgBouncer's single loop runs
/// everything). Sockets are registered once (in, out, peer hang-up; edge-triggered), so a read or a
/// flush costs no epoll_ctl. A connection is closed on the thread serving its set, after the batch of
/// events that may still name it, so an event never reaches a closed (or reused) descriptor. A
/// database listener's socket can be in the set too (<see cref="EpollAcceptor"/>): its clients are
/// accepted, and their sessions started, on this thread.
/// </summary>
/// <remarks>
/// A loop other than the transport's first can <b>park</b> (<see cref="EpollLoopParking"/>): its set
/// goes into the first loop's set (nested, level-triggered), its thread blocks, and the first loop's
/// thread serves its events and closes its connections, until the first loop brings it back. One
/// thread serves a set at a time: a loop parks between its batches, after which only the first loop
/// touches its set, and the first loop brings it back between its own batches, after taking the set
/// out of its own.
/// </remarks>
internal sealed unsafe class EpollLoop : IDisposable
{
    private const int MaxEvents = 256;
    private const ulong WakeToken = 0;

    private readonly int _epoll;
    private readonly int _wake;
    private readonly ConcurrentQueue<IEpollRegistration> _closing = new();
    private readonly Thread _thread;
    private readonly EpollLoop? _first;          // the loop that serves this one's set while it is parked (null: this is the first)
    private readonly EpollLoopParking _parking;
    private readonly GCHandle _handle;           // this loop's token in the first loop's set while parked
    private readonly object _parkGate = new();   // Monitor: a parked thread waits on it
    private readonly List<EpollLoop> _guests = [];   // first loop only: the loops parked in its set, last parked last (under _parkGate)
    private volatile bool _parked;               // written under _parkGate; read without it on the loop's own path
    private volatile bool _parkRequested;        // RequestPark: park after the current batch
    private volatile bool _unparkRequested;      // RequestUnpark (first loop): bring the last parked loop back after the current batch
    private volatile bool _stopping;
    private volatile bool _stopped;
    private readonly Lock _descriptors = new();  // held only around system calls on _epoll and _wake (never while running callbacks; after _parkGate)
    private bool _released;                      // under _descriptors: _epoll and _wake are closed (the loop stopped)

    // The serving thread's window (see EpollLoopParking), touched by that thread only, and what it published.
    private long _windowStart;
    private long _windowEvents;
    private long _windowSwitches;
    private int _streak;                         // consecutive windows for the pending decision (park, or bring one back)
    private double _sleepsPerEvent = double.PositiveInfinity;
    private long _publishedAt = long.MinValue / 2;

    /// <param name="name">The thread's name.</param>
    /// <param name="index">The loop's place in its transport.</param>
    /// <param name="first">The transport's first loop, which serves this one's set while it is parked (null: this is the first).</param>
    /// <param name="parking">The transport's parking policy (when off, <see cref="RequestPark"/> still works).</param>
    public EpollLoop(string name, int index, EpollLoop? first, EpollLoopParking parking)
    {
        Index = index;
        _first = first;
        _parking = parking;
        _handle = GCHandle.Alloc(this, GCHandleType.Normal);
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

    /// <summary>Whether the loop is parked: its set is served by the first loop's thread.</summary>
    public bool Parked => _parked;

    /// <summary>Sleeps per event of the serving thread's last window (infinite: none yet, or no events; NaN while parked).</summary>
    public double SleepsPerEvent => Parked ? double.NaN : Volatile.Read(ref _sleepsPerEvent);

    /// <summary>
    /// Adds a connection's socket to the set; its events go to <paramref name="token"/>'s connection.
    /// When the socket cannot join the set the token is freed (nothing can name it; the caller
    /// disposes the socket).
    /// </summary>
    /// <exception cref="ObjectDisposedException">the loop has stopped.</exception>
    public void Register(int fd, GCHandle token)
    {
        var ev = stackalloc byte[16];
        EpollNative.SetEvent(ev, EpollNative.EpollIn | EpollNative.EpollOut | EpollNative.EpollRdHup | EpollNative.EpollEt, (ulong)GCHandle.ToIntPtr(token));
        lock (_descriptors)
        {
            if (_released)
            {
                token.Free();
                throw new ObjectDisposedException(nameof(EpollLoop), "the epoll transport has stopped");
            }
            if (EpollNative.epoll_ctl(_epoll, EpollNative.EpollCtlAdd, fd, ev) != 0)
            {
                var errno = Marshal.GetLastPInvokeError();
                token.Free();
                throw new IOException("epoll_ctl(ADD) failed: errno " + errno);
            }
        }
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
        lock (_parkGate)
            Monitor.PulseAll(_parkGate);
        if (Thread.CurrentThread != _thread)
            _thread.Join(TimeSpan.FromSeconds(5));
    }

    /// <remarks>Under the lock that <see cref="Release"/> takes: never a write to a descriptor number the process has since reused.</remarks>
    private void Wake()
    {
        ulong one = 1;
        lock (_descriptors)
        {
            if (!_released)
                EpollNative.write(_wake, &one, sizeof(ulong));
        }
    }

    private void DrainClosing()
    {
        lock (_closing)
        {
            // Once the loop has stopped its set is (about to be) closed: the sockets only close, which
            // takes them out of it (-1: no set to leave, never a number the process may have reused).
            while (_closing.TryDequeue(out var closing))
                closing.CloseOnLoop(_stopped ? -1 : _epoll);
        }
    }

    /// <summary>
    /// The loop's thread, stopping: closes the set and the wake-up descriptor and frees the loop's
    /// token, so that a stopped transport holds no descriptor and no handle (an edge that is started
    /// and stopped in a process that goes on — tests, an embedding host — would leak two descriptors
    /// and a rooted loop per loop each time). A parked loop whose first loop still runs stays in that
    /// loop's set: it keeps both until the process ends, rather than leave the first loop a freed
    /// token or a descriptor number that may be reused.
    /// </summary>
    private void Release()
    {
        if (_parked && _first is { _stopped: false })
            return;
        lock (_descriptors)
        {
            _released = true;
            EpollNative.close(_wake);
            EpollNative.close(_epoll);
        }
        _handle.Free();
    }

    private void Run()
    {
        var events = stackalloc byte[MaxEvents * 16];
        var guestEvents = stackalloc byte[MaxEvents * 16];   // the first loop serves parked loops' sets into it
        StartWindow(Environment.TickCount64);
        while (!_stopping)
        {
            if (WaitWhileParked())
                continue;
            var n = EpollNative.epoll_wait(_epoll, events, MaxEvents, -1);
            if (n < 0)
            {
                if (Marshal.GetLastPInvokeError() == EpollNative.Eintr)
                    continue;
                Environment.FailFast("mproxy: epoll_wait failed: errno " + Marshal.GetLastPInvokeError());
            }
            _windowEvents += n;
            Dispatch(events, n, guestEvents);
            DrainClosing();
            if (_parkRequested || _unparkRequested)
                OnRequests();
            else
                EndWindowIfDue();
        }
        _stopped = true;
        DrainClosing();
        Release();
    }

    /// <summary>Hands a batch of this set's events to their connections, listeners and (first loop only) parked loops.</summary>
    private void Dispatch(byte* events, int n, byte* guestEvents)
    {
        for (var i = 0; i < n; i++)
        {
            var (flags, data) = EpollNative.GetEvent(events, i);
            if (data == WakeToken)
            {
                ulong count;
                EpollNative.read(_wake, &count, sizeof(ulong));
                continue;
            }
            switch (GCHandle.FromIntPtr((nint)data).Target)
            {
                case EpollConnection connection:
                    try
                    {
                        connection.OnEvents(flags);
                    }
                    catch (Exception e)
                    {
                        // A continuation that ran inline threw: that connection's problem, never the loop's.
                        connection.OnLoopFault(e);
                    }
                    break;
                case EpollAcceptor acceptor:
                    acceptor.OnAcceptable();
                    break;
                case EpollLoop guest:
                    _windowEvents += guest.ServeParked(guestEvents);
                    break;
            }
        }
    }

    /// <summary>On the first loop's thread, while this loop is parked: one batch of its set's ready events, then its closings.</summary>
    private int ServeParked(byte* events)
    {
        var n = EpollNative.epoll_wait(_epoll, events, MaxEvents, 0);
        if (n <= 0)
            return 0; // nothing left (another pass took it), or interrupted: the level-triggered entry reports the set again
        Dispatch(events, n, null);
        DrainClosing();
        return n;
    }

    private void StartWindow(long now)
    {
        _windowStart = now;
        _windowEvents = 0;
        _windowSwitches = EpollNative.ThreadVoluntarySwitches();
    }

    /// <summary>After a batch: once a window has passed, publish its sleeps per event, and (parking on) park or bring a parked loop back.</summary>
    private void EndWindowIfDue()
    {
        var now = Environment.TickCount64;
        if (now - _windowStart < EpollLoopParking.WindowMs)
            return;
        var ratio = EpollLoopParking.SleepsPerEvent(EpollNative.ThreadVoluntarySwitches() - _windowSwitches, _windowEvents);
        var events = _windowEvents;
        Volatile.Write(ref _sleepsPerEvent, ratio);
        Volatile.Write(ref _publishedAt, now);
        if (_parking.Enabled)
            Decide(ratio, events, now);
        StartWindow(Environment.TickCount64);
    }

    /// <summary>A loop with time to spare parks if the first has time too; the first, serving parked loops' sets without sleeping, brings one back.</summary>
    private void Decide(double ratio, long events, long now)
    {
        if (_first is not null)
        {
            _streak = EpollLoopParking.ShouldPark(ratio, _first.SleepsPerEventAt(now)) ? _streak + 1 : 0;
            if (_streak >= EpollLoopParking.ParkAfterWindows && _parking.TryClaimChange(now, park: true))
                Park();
        }
        else if (HasGuests())
        {
            _streak = EpollLoopParking.ShouldUnpark(ratio, events) ? _streak + 1 : 0;
            if (_streak >= EpollLoopParking.UnparkAfterWindows && _parking.TryClaimChange(now, park: false))
            {
                _streak = 0;
                UnparkLast();
            }
        }
    }

    /// <summary>What another loop reads of this one: its last window's sleeps per event, or infinite when that is old (an idle loop publishes nothing while it sleeps).</summary>
    private double SleepsPerEventAt(long now) =>
        now - Volatile.Read(ref _publishedAt) > 2 * EpollLoopParking.WindowMs ? double.PositiveInfinity : Volatile.Read(ref _sleepsPerEvent);

    /// <summary>Parks this loop after its current batch, whatever the policy says (the tests' way in).</summary>
    internal void RequestPark()
    {
        if (_first is null)
            throw new InvalidOperationException("the first loop never parks");
        _parkRequested = true;
        Wake();
    }

    /// <summary>On the first loop: brings the loop parked last back after the current batch, whatever the policy says.</summary>
    internal void RequestUnpark()
    {
        if (_first is not null)
            throw new InvalidOperationException("only the first loop serves parked loops");
        _unparkRequested = true;
        Wake();
    }

    private void OnRequests()
    {
        if (_parkRequested)
        {
            _parkRequested = false;
            Park();
        }
        if (_unparkRequested)
        {
            _unparkRequested = false;
            UnparkLast();
        }
    }

    /// <summary>On this loop's thread, between batches: its set goes into the first loop's, which serves it from now on.</summary>
    private void Park()
    {
        _streak = 0;
        lock (_parkGate)
            _parked = true;
        if (_first!.AddGuest(this))
            return;
        lock (_parkGate)
            _parked = false; // the first loop is stopping: this one keeps serving its own set
    }

    /// <summary>On the first loop's thread, between its batches: the loop parked last (if any) comes back.</summary>
    private void UnparkLast()
    {
        EpollLoop guest;
        lock (_parkGate)
        {
            if (_guests.Count == 0)
                return;
            guest = _guests[^1];
            _guests.RemoveAt(_guests.Count - 1);
        }
        // Between this thread's batches: no event of the guest's set is in hand.
        EpollNative.epoll_ctl(_epoll, EpollNative.EpollCtlDel, guest._epoll, null);
        lock (guest._parkGate)
        {
            guest._parked = false;
            Monitor.PulseAll(guest._parkGate);
        }
    }

    private bool HasGuests()
    {
        lock (_parkGate)
            return _guests.Count > 0;
    }

    /// <summary>
    /// On the guest's thread: its set joins this (first) loop's; in the list only once it is in the
    /// set, so that bringing it back always finds it there. False when this loop is stopping (its set
    /// may be closed already, and nothing would serve the guest's): the guest does not park.
    /// </summary>
    private bool AddGuest(EpollLoop guest)
    {
        var ev = stackalloc byte[16];
        // Level-triggered: while the guest's set has ready events the first loop hears of it again.
        EpollNative.SetEvent(ev, EpollNative.EpollIn, (ulong)GCHandle.ToIntPtr(guest._handle));
        lock (_parkGate)
        {
            lock (_descriptors)
            {
                if (_stopping || _released)
                    return false;
                if (EpollNative.epoll_ctl(_epoll, EpollNative.EpollCtlAdd, guest._epoll, ev) != 0)
                    Environment.FailFast("mproxy: epoll_ctl(ADD) of a parked loop's set failed: errno " + Marshal.GetLastPInvokeError());
            }
            _guests.Add(guest);
        }
        return true;
    }

    /// <summary>While parked, blocks until brought back or stopped; true when it blocked (the caller looks at stopping again).</summary>
    private bool WaitWhileParked()
    {
        if (!_parked)
            return false; // every batch passes here: no lock when serving (only this thread sets it)
        lock (_parkGate)
        {
            if (!_parked)
                return false;
            while (_parked && !_stopping)
                Monitor.Wait(_parkGate);
        }
        // Back (or stopping): a new window, not one that counts the parked time's single sleep.
        StartWindow(Environment.TickCount64);
        return true;
    }
}

/// <summary>What an <see cref="EpollLoop"/>'s set holds (a connection, a listener): closed on the loop's thread.</summary>
internal interface IEpollRegistration
{
    /// <summary>On the loop's thread, after the events that may name it: leaves the set and closes its socket.</summary>
    void CloseOnLoop(int epoll);
}
