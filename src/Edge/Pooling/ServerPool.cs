using System.Diagnostics;

namespace MProxy.Edge.Pooling;

/// <summary>Counters of one pool, read for SHOW POOLS and metrics.</summary>
public readonly record struct PoolStats(int Size, int Total, int Idle, int Active, int Opening, int Waiting, TimeSpan LongestWait);

/// <summary>
/// A fixed-size pool of server connections for one (database, user) upstream. Idle connections are
/// reused most-recent-first; clients that find the pool full wait in FIFO order up to the wait
/// timeout. Every state change happens under one lock, in the methods of this class.
/// </summary>
/// <remarks>
/// Protocol-neutral: opening, checking and closing connections is the factory's job. All time comes
/// from the injected <see cref="TimeProvider"/>.
/// </remarks>
public sealed class ServerPool<TConnection>
    where TConnection : class, IPooledConnection
{
    private readonly object _lock = new();
    private readonly Stack<TConnection> _idle = new();
    private readonly Queue<Waiter> _waiters = new();
    private readonly IServerConnectionFactory<TConnection> _factory;
    private readonly TimeProvider _time;
    private int _total;   // open + opening
    private int _opening;
    private bool _closed;

    public ServerPool(string name, PoolSettings settings, IServerConnectionFactory<TConnection> factory, TimeProvider time)
    {
        Name = name;
        Settings = settings;
        _factory = factory;
        _time = time;
    }

    public string Name { get; }

    public PoolSettings Settings { get; private set; }

    /// <summary>Applies new settings from a reload; a smaller size takes effect as connections return.</summary>
    public void Reconfigure(PoolSettings settings)
    {
        lock (_lock)
            Settings = settings;
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
    public ValueTask<TConnection> AcquireAsync(CancellationToken cancellationToken)
    {
        TConnection? connection = null;
        lock (_lock)
        {
            if (!_closed && !HasWaitersLocked() && _idle.TryPeek(out var top) && IsReusable(top, _time.GetTimestamp()) && !NeedsCheck(top))
                connection = _idle.Pop();
        }
        return connection is not null ? new ValueTask<TConnection>(connection) : AcquireSlowAsync(cancellationToken);
    }

    private async ValueTask<TConnection> AcquireSlowAsync(CancellationToken cancellationToken)
    {
        var started = _time.GetTimestamp();
        while (true)
        {
            TConnection? connection = null;
            var mayOpen = false;
            Waiter? waiter = null;
            List<TConnection>? stale = null;
            lock (_lock)
            {
                if (_closed)
                    throw new PoolClosedException(Name);
                var now = _time.GetTimestamp();
                // Waiters already queued go first: a newcomer never overtakes them.
                if (!HasWaitersLocked())
                {
                    while (_idle.TryPop(out var candidate))
                    {
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
                    waiter = new Waiter(started);
                    _waiters.Enqueue(waiter);
                }
            }
            CloseAll(stale, "expired while idle");

            if (connection is not null)
            {
                if (!NeedsCheck(connection) || await CheckAsync(connection, cancellationToken))
                    return connection;
                continue;
            }
            if (mayOpen)
                return await OpenAsync(cancellationToken);

            var grant = await WaitAsync(waiter!, started, cancellationToken);
            if (grant.Connection is { } granted)
            {
                if (!NeedsCheck(granted) || await CheckAsync(granted, cancellationToken))
                    return granted;
                continue;
            }
            // Granted a free slot: open a connection in it.
            return await OpenAsync(cancellationToken);
        }
    }

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

    private async ValueTask<Grant> WaitAsync(Waiter waiter, long started, CancellationToken cancellationToken)
    {
        var remaining = Settings.WaitTimeout - _time.GetElapsedTime(started);
        if (remaining <= TimeSpan.Zero)
            remaining = TimeSpan.FromMilliseconds(1);
        using var timer = _time.CreateTimer(static state => ((Waiter)state!).TimeOut(), waiter, remaining, Timeout.InfiniteTimeSpan);
        using var registration = cancellationToken.UnsafeRegister(static state => ((Waiter)state!).Cancel(), waiter);
        try
        {
            return await waiter.Task;
        }
        catch (TimeoutException)
        {
            throw new PoolTimeoutException(Name, Settings.Size, _time.GetElapsedTime(started));
        }
        catch (OperationCanceledException)
        {
            throw new OperationCanceledException(cancellationToken);
        }
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
                    waiter = DequeueWaiterLocked();
                    if (waiter is null)
                    {
                        connection.IdleSince = now;
                        _idle.Push(connection);
                    }
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
                // The stack's bottom holds the connections idle longest; rebuild it without the stale ones.
                var keep = _idle.ToArray(); // top first
                _idle.Clear();
                for (var i = keep.Length - 1; i >= 0; i--)
                {
                    var c = keep[i];
                    var idleTooLong = Settings.IdleTimeout > TimeSpan.Zero && _time.GetElapsedTime(c.IdleSince, now) > Settings.IdleTimeout && _total > Settings.MinSize;
                    if (!IsReusable(c, now) || idleTooLong)
                    {
                        (stale ??= []).Add(c);
                        _total--;
                    }
                    else
                    {
                        _idle.Push(c);
                    }
                }
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
    public void Close()
    {
        List<TConnection> idle;
        List<Waiter> waiters;
        lock (_lock)
        {
            _closed = true;
            idle = [.. _idle];
            _total -= idle.Count;
            _idle.Clear();
            waiters = [.. _waiters];
            _waiters.Clear();
        }
        foreach (var waiter in waiters)
            waiter.TryFail(new PoolClosedException(Name));
        CloseAll(idle, "pool closed");
    }

    private bool IsReusable(TConnection connection, long now) =>
        !connection.IsBroken && (Settings.Lifetime <= TimeSpan.Zero || _time.GetElapsedTime(connection.OpenedAt, now) < Settings.Lifetime);

    private bool NeedsCheck(TConnection connection) =>
        Settings.CheckAfterIdle > TimeSpan.Zero && _time.GetElapsedTime(connection.IdleSince) > Settings.CheckAfterIdle;

    /// <summary>Drops waiters that already gave up from the head of the queue; true if a live one remains.</summary>
    private bool HasWaitersLocked()
    {
        while (_waiters.TryPeek(out var head) && head.IsCompleted)
            _waiters.Dequeue();
        return _waiters.Count > 0;
    }

    private Waiter? DequeueWaiterLocked()
    {
        while (_waiters.TryDequeue(out var waiter))
            if (!waiter.IsCompleted)
                return waiter;
        return null;
    }

    /// <summary>A slot was freed: let the first live waiter open a connection in it (outside the lock).</summary>
    private void GrantFreeSlot()
    {
        while (true)
        {
            Waiter? waiter;
            lock (_lock)
            {
                if (_closed || _total >= Settings.Size)
                    return;
                waiter = DequeueWaiterLocked();
                if (waiter is null)
                    return;
                _total++;
                _opening++;
            }
            if (waiter.TryGrant(new Grant(null)))
                return;
            lock (_lock)
            {
                _total--;
                _opening--;
            }
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

    /// <summary>One client's place in the FIFO queue; completed exactly once (grant, timeout, cancel or failure).</summary>
    private sealed class Waiter(long enqueuedAt)
    {
        // Continuations run inline: a grant resumes the waiting client on the returning thread.
        private readonly TaskCompletionSource<Grant> _completion = new();

        public long EnqueuedAt { get; } = enqueuedAt;

        public Task<Grant> Task => _completion.Task;

        public bool IsCompleted => _completion.Task.IsCompleted;

        public bool TryGrant(Grant grant) => _completion.TrySetResult(grant);

        public bool TryFail(Exception exception) => _completion.TrySetException(exception);

        public void TimeOut() => _completion.TrySetException(new TimeoutException());

        public void Cancel() => _completion.TrySetCanceled();
    }
}

/// <summary>The protocol-neutral settings a <see cref="ServerPool{TConnection}"/> runs with.</summary>
public sealed record PoolSettings(int Size, int MinSize, TimeSpan WaitTimeout, TimeSpan ConnectTimeout, TimeSpan IdleTimeout, TimeSpan Lifetime, TimeSpan CheckAfterIdle)
{
    [Conditional("DEBUG")]
    public void AssertValid() => Debug.Assert(Size >= 1 && MinSize <= Size);
}
