using System.Runtime.CompilerServices;
using System.Threading.Tasks.Sources;

namespace MProxy.Edge.Pooling;

/// <summary>Counters of one pool, read for SHOW POOLS and metrics.</summary>
public readonly record struct PoolStats(int Size, int Total, int Idle, int Active, int Opening, int Waiting, TimeSpan LongestWait);

/// <summary>
/// A fixed-size pool of server connections for one (database, user) upstream. Idle connections are
/// reused most-recent-first; clients that find the pool full wait in FIFO order up to the wait
/// timeout. Every state change happens under one lock, in the methods of this class.
/// </summary>
/// <remarks>
/// <para>
/// <b>Loop affinity.</b> On the epoll transport each connection's I/O completes on one event loop's
/// thread (<see cref="IPooledConnection.Affinity"/>), and so does each client's. A client on loop
/// <i>L</i> leases the most recent idle connection on <i>L</i> if one is near the top of the stack, and
/// a connection returned on <i>L</i> goes to the first waiter on <i>L</i> if one is near the front of
/// the line and arrived within a millisecond of the first waiter — unless the first waiter has been
/// passed over twice already. Waiters are thus served in arrival order, counting those that arrived
/// within a millisecond of each other as arriving at once. A transaction then runs
/// on one thread (the client's requests, the server's responses), as in a single-threaded pooler,
/// instead of waking the other loop for every response: measured with TPC-B-like pgbench at 50
/// clients, 2–4 % more transactions per second; at 10, 9 %.
/// </para>
/// <para>
/// Protocol-neutral: opening, checking and closing connections is the factory's job. All time comes
/// from the injected <see cref="TimeProvider"/>.
/// </para>
/// </remarks>
public sealed class ServerPool<TConnection> : ISlotLimitedPool
    where TConnection : class, IPooledConnection
{
    private readonly Lock _lock = new();
    private readonly List<TConnection> _idle = [];             // a stack: the most recently returned last
    private readonly LinkedList<Waiter> _waiters = new();      // FIFO; a waiter that gives up leaves at once
    private readonly Stack<Waiter> _spareWaiters = new();      // reused: waiting allocates nothing in steady state
    private ITimer? _waitTimer;                                // one timer for the whole queue, due at its earliest deadline
    private long _waitTimerDue = long.MaxValue;                // when it is due (MaxValue: not armed)
    private readonly IServerConnectionFactory<TConnection> _factory;
    private readonly TimeProvider _time;
    private int _total;   // open + opening
    private int _opening;
    private bool _closed;
    private string _closedReason = "";
    private PoolSettings _configured;
    private int? _slotLimit;
    private readonly long _affinityWindow;                     // AffinityWindow in timestamp ticks

    public ServerPool(string name, PoolSettings settings, IServerConnectionFactory<TConnection> factory, TimeProvider time)
    {
        Name = name;
        Settings = _configured = settings;
        _factory = factory;
        _time = time;
        _affinityWindow = ToTimestamp(AffinityWindow);
    }

    public string Name { get; }

    /// <summary>The settings in force: the configured ones, with the size capped by the slot limit.</summary>
    public PoolSettings Settings { get; private set; }

    /// <summary>The connection slots the policy tier grants this pool (null: no global limit).</summary>
    public int? SlotLimit
    {
        get
        {
            lock (_lock)
                return _slotLimit;
        }
    }

    /// <summary>
    /// Applies new settings from a reload. A smaller size takes effect as connections return; a larger
    /// one at once: clients already waiting get the new slots (they do not wait for a return).
    /// </summary>
    public void Reconfigure(PoolSettings settings)
    {
        lock (_lock)
        {
            _configured = settings;
            Settings = EffectiveLocked();
        }
        GrantFreeSlots();
    }

    /// <summary>
    /// Caps the pool at the connection slots the policy tier grants (null: no global limit): the size
    /// is the smaller of the grant (at least one) and the configured size. Like a reload, a smaller
    /// size takes effect as connections return, a larger one at once.
    /// </summary>
    public void LimitSlots(int? slots)
    {
        lock (_lock)
        {
            var limit = slots is { } granted ? Math.Max(1, granted) : (int?)null;
            if (limit == _slotLimit)
                return;
            _slotLimit = limit;
            Settings = EffectiveLocked();
        }
        GrantFreeSlots();
    }

    private PoolSettings EffectiveLocked()
    {
        if (_slotLimit is not { } limit || limit >= _configured.Size)
            return _configured;
        return _configured with { Size = limit, MinSize = Math.Min(_configured.MinSize, limit) };
    }

    public PoolStats GetStats()
    {
        lock (_lock)
        {
            var longest = TimeSpan.Zero;
            var now = _time.GetTimestamp();
            var waiting = 0;
            foreach (var waiter in _waiters)
                if (!waiter.IsCompleted)
                {
                    waiting++;
                    var waited = _time.GetElapsedTime(waiter.EnqueuedAt, now);
                    if (waited > longest)
                        longest = waited;
                }
            var idle = _idle.Count;
            return new PoolStats(Settings.Size, _total, idle, _total - idle - _opening, _opening, waiting, longest);
        }
    }

    /// <summary>
    /// Leases a connection: an idle one if any (checked first if it sat idle too long), a new one while
    /// the pool is below its size, otherwise the first one returned after this caller's turn comes.
    /// </summary>
    /// <exception cref="PoolTimeoutException">no connection within the wait timeout.</exception>
    /// <exception cref="PoolClosedException">the pool is shutting down.</exception>
    public ValueTask<TConnection> AcquireAsync(CancellationToken cancellationToken) => AcquireAsync(-1, cancellationToken);

    /// <summary>
    /// <see cref="AcquireAsync(CancellationToken)"/> for a client whose I/O completes on event loop
    /// <paramref name="affinity"/> (-1: none). A connection returned while several clients wait goes
    /// to the first of them on its own loop, if one is among the first few in line, arrived within
    /// <see cref="AffinityWindow"/> of the first in line, and the first in line has not been passed
    /// over too often already: the client then runs its transaction on one
    /// thread (its requests, the server's responses), as in a single-threaded pooler, instead of
    /// waking the other loop for every response.
    /// </summary>
    public ValueTask<TConnection> AcquireAsync(int affinity, CancellationToken cancellationToken)
    {
        TConnection? connection = null;
        lock (_lock)
        {
            if (!_closed && !HasWaitersLocked() && _idle.Count > 0)
            {
                var index = IdleIndexLocked(affinity);
                var candidate = _idle[index];
                var now = _time.GetTimestamp();
                if (IsReusable(candidate, now) && !NeedsCheck(candidate, now))
                {
                    _idle.RemoveAt(index);
                    connection = candidate;
                }
            }
        }
        return connection is not null ? new ValueTask<TConnection>(connection) : AcquireSlowAsync(affinity, cancellationToken);
    }

    [AsyncMethodBuilder(typeof(PooledValueTaskMethodBuilder<>))]
    private async ValueTask<TConnection> AcquireSlowAsync(int affinity, CancellationToken cancellationToken)
    {
        var started = _time.GetTimestamp();
        var now = started;
        while (true)
        {
            TConnection? connection = null;
            var mayOpen = false;
            Waiter? waiter = null;
            List<TConnection>? stale = null;
            lock (_lock)
            {
                if (_closed)
                    throw new PoolClosedException(Name, _closedReason);
                // Waiters already queued go first: a newcomer never overtakes them.
                if (!HasWaitersLocked())
                {
                    while (_idle.Count > 0)
                    {
                        var index = IdleIndexLocked(affinity);
                        var candidate = _idle[index];
                        _idle.RemoveAt(index);
                        if (IsReusable(candidate, now))
                        {
                            connection = candidate;
                            break;
                        }
                        (stale ??= []).Add(candidate);
                        _total--;
                    }
                    if (connection is null && _total < Settings.Size)
                    {
                        _total++;
                        _opening++;
                        mayOpen = true;
                    }
                }
                if (connection is null && !mayOpen)
                {
                    waiter = _spareWaiters.TryPop(out var spare) ? spare : new Waiter(this);
                    // The deadline counts from the first attempt (a connection that failed its check sends its caller round again).
                    var deadline = Math.Max(started + ToTimestamp(Settings.WaitTimeout), now + ToTimestamp(TimeSpan.FromMilliseconds(1)));
                    waiter.Arm(started, deadline, affinity);
                    _waiters.AddLast(waiter.Node);
                    ArmWaitTimerLocked(deadline);
                }
            }
            CloseAll(stale, "expired while idle");

            if (connection is not null)
            {
                if (!NeedsCheck(connection, now) || await CheckAsync(connection, cancellationToken))
                    return connection;
                now = _time.GetTimestamp(); // round again: the check failed
                continue;
            }
            if (mayOpen)
                return await OpenAsync(cancellationToken);

            // The wait is awaited here rather than in a helper: every async method on the stack when
            // a wait suspends parks its state machine in a box (PooledValueTaskMethodBuilder's) and
            // resumes through it, so each extra frame is one more box and step per waited lease.
            var queued = waiter!;
            var registration = cancellationToken.CanBeCanceled
                ? cancellationToken.UnsafeRegister(static state => ((Waiter)state!).TryComplete(WaitOutcome.Canceled, default), queued)
                : default;
            WaitOutcome outcome;
            Grant grant;
            try
            {
                (outcome, grant) = await queued.AsValueTask();
            }
            finally
            {
                await registration.DisposeAsync();
                lock (_lock)
                    _spareWaiters.Push(queued);
            }
            switch (outcome)
            {
                case WaitOutcome.Granted:
                    break;
                case WaitOutcome.TimedOut:
                    throw new PoolTimeoutException(Name, Settings.Size, _time.GetElapsedTime(started));
                case WaitOutcome.Canceled:
                    throw new OperationCanceledException(cancellationToken);
                default:
                    throw new PoolClosedException(Name, _closedReason);
            }
            // A granted connection comes straight from Return, in use until then: no check query
            // (its continuation runs inline there, so it has not sat idle since).
            if (grant.Connection is { } granted)
                return granted;
            // Granted a free slot: open a connection in it.
            return await OpenAsync(cancellationToken);
        }
    }

    [AsyncMethodBuilder(typeof(PooledValueTaskMethodBuilder<>))]
    private async ValueTask<TConnection> OpenAsync(CancellationToken cancellationToken)
    {
        try
        {
            var connection = await _factory.OpenAsync(cancellationToken);
            lock (_lock)
                _opening--;
            return connection;
        }
        catch
        {
            lock (_lock)
            {
                _opening--;
                _total--;
            }
            GrantFreeSlot();
            throw;
        }
    }

    private async ValueTask<bool> CheckAsync(TConnection connection, CancellationToken cancellationToken)
    {
        bool ok;
        try
        {
            ok = await _factory.CheckAsync(connection, cancellationToken);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            Return(connection);
            throw;
        }
        catch
        {
            ok = false;
        }
        if (!ok)
            Discard(connection, "failed the check query after being idle");
        return ok;
    }

    /// <summary>Returns a connection that is idle and clean (or broken: then it is closed).</summary>
    /// <remarks>
    /// A waiting client gets the connection directly, and its continuation runs inline on this
    /// thread, outside the lock (the hand-off costs no thread switch, as in a single-threaded pooler).
    /// </remarks>
    public void Return(TConnection connection)
    {
        while (true)
        {
            Waiter? waiter;
            var close = false;
            lock (_lock)
            {
                var now = _time.GetTimestamp();
                if (_closed || !IsReusable(connection, now) || _total > Settings.Size)
                {
                    _total--;
                    close = true;
                    waiter = null;
                }
                else
                {
                    // Idle from now: a connection handed straight to a waiter was idle for no time at
                    // all, and must not look idle since it opened (a check query on every hand-off
                    // once the pool has been busy for checkAfterIdleMs).
                    connection.IdleSince = now;
                    waiter = DequeueWaiterLocked(connection.Affinity);
                    if (waiter is null)
                        _idle.Add(connection);
                }
            }
            if (close)
            {
                _factory.Close(connection, connection.IsBroken ? "broken" : "expired");
                GrantFreeSlot();
                return;
            }
            if (waiter is null || waiter.TryGrant(new Grant(connection)))
                return;
            // That waiter gave up (timeout or cancel) meanwhile: offer the connection to the next one.
        }
    }

    /// <summary>Closes a leased connection that must not be reused and frees its slot.</summary>
    public void Discard(TConnection connection, string reason)
    {
        lock (_lock)
            _total--;
        _factory.Close(connection, reason);
        GrantFreeSlot();
    }

    /// <summary>
    /// Periodic upkeep, called by the janitor: closes connections idle longer than the idle timeout
    /// (down to the minimum size) or older than their lifetime, drops broken idle ones, and opens
    /// connections up to the minimum size.
    /// </summary>
    public void Maintain()
    {
        List<TConnection>? stale = null;
        var toOpen = 0;
        lock (_lock)
        {
            if (_closed)
                return;
            var now = _time.GetTimestamp();
            if (_idle.Count > 0)
            {
                // The stack's bottom holds the connections idle longest; keep the rest in their order.
                var kept = 0;
                for (var i = 0; i < _idle.Count; i++)
                {
                    var c = _idle[i];
                    var idleTooLong = Settings.IdleTimeout > TimeSpan.Zero && _time.GetElapsedTime(c.IdleSince, now) > Settings.IdleTimeout && _total > Settings.MinSize;
                    if (!IsReusable(c, now) || idleTooLong)
                    {
                        (stale ??= []).Add(c);
                        _total--;
                    }
                    else
                    {
                        _idle[kept++] = c;
                    }
                }
                _idle.RemoveRange(kept, _idle.Count - kept);
            }
            if (!HasWaitersLocked() && _total < Settings.MinSize)
            {
                toOpen = Settings.MinSize - _total;
                _total += toOpen;
                _opening += toOpen;
            }
        }
        CloseAll(stale, "idle timeout or lifetime reached");
        for (var i = 0; i < toOpen; i++)
            _ = OpenInBackgroundAsync();
    }

    private async Task OpenInBackgroundAsync()
    {
        TConnection connection;
        try
        {
            using var cts = new CancellationTokenSource(Settings.ConnectTimeout, _time);
            connection = await OpenAsync(cts.Token);
        }
        catch
        {
            return; // OpenAsync released the slot; the next Maintain tries again.
        }
        Return(connection);
    }

    /// <summary>Stops handing out connections, fails waiters and closes idle connections.</summary>
    /// <param name="reason">Why, as waiters and later callers are told (<see cref="PoolClosedException"/>); the first close's reason stays.</param>
    public void Close(string reason = "the edge is stopping")
    {
        List<TConnection> idle;
        List<Waiter> waiters;
        // Waiters are completed outside the lock (their continuations run inline).
        lock (_lock)
        {
            if (!_closed)
                _closedReason = reason;
            _closed = true;
            idle = [.. _idle];
            _total -= idle.Count;
            _idle.Clear();
            waiters = [.. _waiters];
            _waitTimer?.Dispose(); // no waiter joins a closed pool
            _waitTimer = null;
            _waitTimerDue = long.MaxValue;
        }
        foreach (var waiter in waiters)
            waiter.TryComplete(WaitOutcome.Closed, default);
        CloseAll(idle, "pool closed");
    }

    private bool IsReusable(TConnection connection, long now) =>
        !connection.IsBroken && (Settings.Lifetime <= TimeSpan.Zero || _time.GetElapsedTime(connection.OpenedAt, now) < Settings.Lifetime);

    private bool NeedsCheck(TConnection connection, long now) =>
        Settings.CheckAfterIdle > TimeSpan.Zero && _time.GetElapsedTime(connection.IdleSince, now) > Settings.CheckAfterIdle;

    private bool HasWaitersLocked() => _waiters.Count > 0;

    private long ToTimestamp(TimeSpan span) => (long)(span.TotalSeconds * _time.TimestampFrequency);

    /// <summary>
    /// Makes the queue's timer due no later than <paramref name="deadline"/>. Waiters join with later
    /// deadlines than those before them, so in steady state this arms the timer only when the queue
    /// stops being empty: a waited lease costs no timer operation of its own.
    /// </summary>
    private void ArmWaitTimerLocked(long deadline)
    {
        if (deadline >= _waitTimerDue)
            return;
        _waitTimerDue = deadline;
        _waitTimer ??= _time.CreateTimer(static state => ((ServerPool<TConnection>)state!).OnWaitTimer(), this, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        var due = _time.GetElapsedTime(_time.GetTimestamp(), deadline);
        // System timers run on a coarser clock than the timestamp and may fire a little early: the
        // callback then finds nobody due and arms again for the rest.
        _waitTimer.Change(due < TimeSpan.FromMilliseconds(1) ? TimeSpan.FromMilliseconds(1) : due, Timeout.InfiniteTimeSpan);
    }

    /// <summary>The queue's timer: times out every waiter past its deadline, then arms for the earliest one left.</summary>
    private void OnWaitTimer()
    {
        List<Waiter>? expired = null;
        lock (_lock)
        {
            _waitTimerDue = long.MaxValue;
            var now = _time.GetTimestamp();
            var next = long.MaxValue;
            for (var node = _waiters.First; node is not null;)
            {
                var waiter = node.Value;
                node = node.Next;
                if (waiter.Deadline > now)
                {
                    next = Math.Min(next, waiter.Deadline);
                }
                else if (waiter.TryClaim())
                {
                    // Claimed and dequeued under the lock: no grant can reach it now, nor a later wait of the same waiter.
                    _waiters.Remove(waiter.Node);
                    (expired ??= []).Add(waiter);
                }
            }
            if (next != long.MaxValue)
                ArmWaitTimerLocked(next);
        }
        if (expired is not null)
            foreach (var waiter in expired)
                waiter.Finish(WaitOutcome.TimedOut, default);
    }

    /// <summary>
    /// Takes a waiter off the queue; it is then the caller's to complete. The first, unless
    /// <paramref name="affinity"/> names a loop and the first is on another: then the first on that
    /// loop among the next <see cref="AffinityScan"/> that arrived within <see cref="AffinityWindow"/>
    /// of the first, while the first has been passed over fewer than <see cref="MaxPassedOver"/>
    /// times. Clients that arrived that close together count as arriving at once (no client could
    /// tell their order from the network's), so the line stays in arrival order.
    /// </summary>
    private Waiter? DequeueWaiterLocked(int affinity = -1)
    {
        if (_waiters.First is not { } first)
            return null;
        var chosen = first;
        if (affinity >= 0 && first.Value.Affinity != affinity && first.Value.PassedOver < MaxPassedOver)
        {
            var window = first.Value.EnqueuedAt + _affinityWindow;
            var scanned = 0;
            for (var node = first.Next; node is not null && scanned < AffinityScan && node.Value.EnqueuedAt <= window; node = node.Next, scanned++)
            {
                if (node.Value.Affinity == affinity)
                {
                    chosen = node;
                    first.Value.PassedOver++;
                    break;
                }
            }
        }
        _waiters.Remove(chosen);
        return chosen.Value;
    }

    /// <summary>
    /// Which idle connection to lease: the most recently returned, or, for a client on event loop
    /// <paramref name="affinity"/>, the most recent on that loop among the top <see cref="AffinityScan"/>.
    /// </summary>
    private int IdleIndexLocked(int affinity)
    {
        var top = _idle.Count - 1;
        if (affinity >= 0)
        {
            for (var i = top; i >= 0 && top - i < AffinityScan; i--)
                if (_idle[i].Affinity == affinity)
                    return i;
        }
        return top;
    }

    /// <summary>How far a returned connection looks behind the first waiter for one on its own loop, and a client down the idle stack for a connection on its own.</summary>
    private const int AffinityScan = 8;

    /// <summary>How often the first waiter may be passed over for one on the returned connection's loop.</summary>
    private const int MaxPassedOver = 2;

    /// <summary>How much later than the first waiter one on the returned connection's loop may have arrived and still go first.</summary>
    internal static readonly TimeSpan AffinityWindow = TimeSpan.FromMilliseconds(1);

    /// <summary>A slot was freed: let the first live waiter open a connection in it (outside the lock).</summary>
    /// <returns>Whether a waiter got a free slot.</returns>
    private bool GrantFreeSlot()
    {
        while (true)
        {
            Waiter? waiter;
            lock (_lock)
            {
                if (_closed || _total >= Settings.Size)
                    return false;
                waiter = DequeueWaiterLocked();
                if (waiter is null)
                    return false;
                _total++;
                _opening++;
            }
            if (waiter.TryGrant(new Grant(null)))
                return true;
            lock (_lock)
            {
                _total--;
                _opening--;
            }
        }
    }

    /// <summary>After the size grew: every free slot to a waiter, until either runs out.</summary>
    private void GrantFreeSlots()
    {
        while (GrantFreeSlot())
        {
        }
    }

    private void CloseAll(List<TConnection>? connections, string reason)
    {
        if (connections is null)
            return;
        foreach (var c in connections)
            _factory.Close(c, reason);
    }

    private readonly record struct Grant(TConnection? Connection);

    private enum WaitOutcome
    {
        Granted,
        TimedOut,
        Canceled,
        Closed,
    }

    /// <summary>
    /// One client's place in the FIFO queue, reused across waits. Completed exactly once per wait
    /// (grant, timeout, cancel or close); a waiter that times out or is cancelled leaves the queue
    /// at once. Its continuation runs inline on the completing thread (a grant resumes the waiting
    /// client on the thread that returned the connection). Timeouts come from the pool's one timer.
    /// </summary>
    private sealed class Waiter : IValueTaskSource<(WaitOutcome, Grant)>
    {
        private readonly ServerPool<TConnection> _pool;
        private ManualResetValueTaskSourceCore<(WaitOutcome, Grant)> _core;
        private int _completed;

        public Waiter(ServerPool<TConnection> pool)
        {
            _pool = pool;
            Node = new LinkedListNode<Waiter>(this);
        }

        public LinkedListNode<Waiter> Node { get; }

        public long EnqueuedAt { get; private set; }

        /// <summary>When this wait times out (a timestamp; read under the pool's lock).</summary>
        public long Deadline { get; private set; }

        public bool IsCompleted => Volatile.Read(ref _completed) != 0;

        /// <summary>The event loop the waiting client's I/O completes on (-1: none).</summary>
        public int Affinity { get; private set; }

        /// <summary>How often a connection went to a waiter behind this one, on the connection's loop, while this one was first (read and written under the pool's lock).</summary>
        public int PassedOver { get; set; }

        /// <summary>Prepares for a new wait (under the pool's lock, before it is queued).</summary>
        public void Arm(long enqueuedAt, long deadline, int affinity)
        {
            _core.Reset();
            _completed = 0;
            EnqueuedAt = enqueuedAt;
            Deadline = deadline;
            Affinity = affinity;
            PassedOver = 0;
        }

        public ValueTask<(WaitOutcome, Grant)> AsValueTask() => new(this, _core.Version);

        public bool TryGrant(Grant grant) => TryComplete(WaitOutcome.Granted, grant);

        /// <summary>Completes this wait unless something else did first; a waiter that gives up leaves the queue.</summary>
        public bool TryComplete(WaitOutcome outcome, Grant grant)
        {
            if (!TryClaim())
                return false;
            if (outcome != WaitOutcome.Granted)
            {
                lock (_pool._lock)
                {
                    if (Node.List is not null)
                        _pool._waiters.Remove(Node);
                }
            }
            Finish(outcome, grant);
            return true;
        }

        /// <summary>Takes the right to complete this wait (false: something else completed it).</summary>
        public bool TryClaim() => Interlocked.Exchange(ref _completed, 1) == 0;

        /// <summary>Completes a wait claimed with <see cref="TryClaim"/> (outside the pool's lock: the continuation runs inline).</summary>
        public void Finish(WaitOutcome outcome, Grant grant) => _core.SetResult((outcome, grant));

        public (WaitOutcome, Grant) GetResult(short token) => _core.GetResult(token);

        public ValueTaskSourceStatus GetStatus(short token) => _core.GetStatus(token);

        public void OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
            _core.OnCompleted(continuation, state, token, flags);
    }
}

/// <summary>The protocol-neutral settings a <see cref="ServerPool{TConnection}"/> runs with.</summary>
public sealed record PoolSettings(int Size, int MinSize, TimeSpan WaitTimeout, TimeSpan ConnectTimeout, TimeSpan IdleTimeout, TimeSpan Lifetime, TimeSpan CheckAfterIdle);
