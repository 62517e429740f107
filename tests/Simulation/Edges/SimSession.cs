using System.Text;
using MProxy.Abstractions.ResourceUnits;
using MProxy.Edge.Backends;
using MProxy.Edge.Pooling;
using MProxy.Edge.Qos;
using MProxy.Edge.Routing;
using MProxy.Simulation.Backends;
using MProxy.Simulation.Core;
using MProxy.Simulation.Workloads;

namespace MProxy.Simulation.Edges;

/// <summary>What a client got back for one request: a result, an error, or an error that closed its connection.</summary>
public readonly record struct Reply(string? SqlState, string? Message, bool Fatal)
{
    public static readonly Reply Ok = new(null, null, false);

    public bool Succeeded => SqlState is null;

    public override string ToString() => Succeeded ? "ok" : $"{(Fatal ? "FATAL" : "ERROR")} {SqlState} {Message}";
}

/// <summary>
/// The protocol-neutral part of a client session, driven by the simulation in place of the
/// PostgreSQL session (<c>PgClientSession</c>), step for step: classify the unit (the real
/// <see cref="StatementClassifier"/>), admit it (<see cref="QosSession.Admit"/> and
/// <see cref="QosSession.RetryBudget"/> after the retry-after), route it (the real
/// <see cref="RouteDecider"/>, waiting for a primary through a failover), take a scheduler slot
/// (<see cref="QosSession.BeginSlotWait"/> / <see cref="QosSession.EndSlotWait"/>) and a connection
/// of that host's pool (<see cref="ServerPool{TConnection}.AcquireAsync(CancellationToken)"/>), run it on the fake
/// server, meter it (<see cref="QosSession.Start"/> / <see cref="QosSession.AddBytes"/> /
/// <see cref="QosSession.Complete"/>), learn the read-your-writes token, and at the transaction's
/// end release the slot, the balancer's in-flight count and the connection — in the order the
/// PostgreSQL session and server connection do. What is modelled rather than run: the wire
/// protocol (framing, pipelining, the relay of result bytes) and the prepared-statement rewriting.
/// </summary>
public sealed class SimSession : IRunawayTarget
{
    private const SessionEffects PinningEffects = SessionEffects.SetParameter | SessionEffects.TemporaryObject | SessionEffects.HoldableCursor
        | SessionEffects.AdvisoryLock | SessionEffects.Listen | SessionEffects.Load;

    private readonly SimEdge _edge;
    private readonly SimContext _sim;
    private readonly QosSession? _qos;
    private readonly Dictionary<string, StatementInfo> _prepared = new(StringComparer.Ordinal);
    private readonly string _actor;
    private SimPool? _pool;
    private FakeServerConnection? _server;
    private bool _serverIsPrimary;
    private SimPool? _balanced;
    private long _balancedSince;
    private CausalToken _token;
    private SessionEffects _sessionEffects;
    private QosAdmission _admission;
    private Reply _refusal;
    private bool _closed;
    private readonly TaskCompletionSource _killed = new();

    internal SimSession(SimEdge edge, string user, long id)
    {
        _edge = edge;
        _sim = edge.Sim;
        User = user;
        Id = id;
        _actor = $"{edge.Name}.s{id}";
        if (edge.Options.Qos.Enabled)
            _qos = edge.Gate.OpenSession(edge.Gate.ResolveTenant(new TenantIdentity(user, SimEdge.Database, null)), this);
    }

    public long Id { get; }

    public string User { get; }

    public SimEdge Edge => _edge;

    public bool IsOpen => !_closed;

    /// <summary>Completes when the edge process dies under the session (the client sees its connection reset).</summary>
    public Task Killed => _killed.Task;

    /// <summary>A server connection is attached (a transaction is open on it).</summary>
    public bool HoldsServer => _server is not null;

    /// <summary>A unit is being processed (between its first message and its reply).</summary>
    public bool Busy { get; private set; }

    internal QosSession? Qos => _qos;

    /// <summary>The read-your-writes token: a WAL position after the client's last write.</summary>
    internal CausalToken Token => _token;

    /// <summary>The timeline of the primary the token was taken on.</summary>
    internal uint TokenTimeline { get; private set; }

    public override string ToString() => _actor;

    /// <summary>
    /// The login's last step: a pool for the primary, and — when that pool never opened a connection —
    /// one connection opened and returned to learn the server's parameters (outside the scheduler, as
    /// the PostgreSQL session does). A failure is a FATAL error that closes the session.
    /// </summary>
    public async Task<Reply> LoginAsync()
    {
        var primary = _edge.Backends.Topology.Primary;
        var pool = _edge.PoolFor(primary?.Index ?? 0);
        if (pool.Welcomed)
            return Reply.Ok;
        try
        {
            var server = await pool.Connections.AcquireAsync(CancellationToken.None);
            pool.Welcomed = true;
            pool.Connections.Return(server);
            return Reply.Ok;
        }
        catch (Exception e) when (e is SimServerException or PoolTimeoutException or PoolClosedException)
        {
            var state = e switch
            {
                SimServerException s => s.SqlState,
                PoolClosedException => "57P01",
                _ => "53300",
            };
            Close("login failed");
            return new Reply(state, e.Message, Fatal: true);
        }
    }

    /// <summary>Parse of a named statement: classified once, executions reuse it (as the statement catalog does).</summary>
    public void Prepare(string name, string text) => _prepared[name] = Classify(text);

    /// <summary>Processes one request unit (a simple Query, or an extended-protocol run up to its Sync).</summary>
    public async Task<Reply> RunAsync(StatementSpec spec)
    {
        if (_closed)
            return new Reply("08006", "connection is closed", Fatal: true);
        if (Busy)
            _sim.Checks.Fail("session", $"{this} got a second request while one was being processed");
        Busy = true;
        try
        {
            var reply = await RunUnitAsync(spec);
            if (reply.Fatal)
                Close("fatal error: " + reply.SqlState);
            return reply;
        }
        catch (SessionGoneException)
        {
            return Gone;
        }
        catch (Exception e)
        {
            _sim.Checks.Fail("unexpected-exception", $"{this} running '{spec}': {e}");
            Close("exception");
            return new Reply("XX000", e.Message, Fatal: true);
        }
        finally
        {
            Busy = false;
        }
    }

    private async Task<Reply> RunUnitAsync(StatementSpec spec)
    {
        var attached = _server is not null;
        var info = spec.PreparedName is { } name && _prepared.TryGetValue(name, out var prepared) ? prepared : Classify(spec.Text);
        _sessionEffects |= info.Session & PinningEffects;

        if (_qos is not null)
        {
            _admission = _qos.Admit(info.Hints, info.Fingerprint, info.IsWrite ? RuKind.Write : RuKind.Read, inTransaction: attached);
            // AdmitAsync: a short debt is waited out on the clock, exactly its retry-after.
            while (!_admission.IsAdmitted && _admission.MayWait)
            {
                await _sim.Clock.Delay(_admission.Rejection.RetryAfter);
                ThrowIfGone();
                _admission = _qos.RetryBudget();
            }
            if (!_admission.IsAdmitted)
            {
                _sim.Trace.Write(_actor, $"refused at admission: {_admission.Rejection.SqlState} {_admission.Rejection.Reason}");
                return new Reply(_admission.Rejection.SqlState, _admission.Rejection.FormatMessage(), Fatal: false);
            }
        }

        if (!attached)
        {
            var pool = await RouteAsync(info, spec);
            ThrowIfGone();
            if (pool is null || !await AttachWithinFailoverAsync(pool))
                return _refusal;
            ThrowIfGone();
        }

        var server = _server!;
        var backends = _edge.Backends;
        var captureToken = backends.Config is { ReadYourWrites: true, ReplicaCount: > 0 } && _serverIsPrimary
            && (info.Boundary == TransactionBoundary.Closes || (info.IsWrite && !server.InTransaction));
        if (!server.InTransaction)
            server.StatementTimeout = _admission.StatementTimeout; // SyncGroupSettings: between transactions only
        _qos?.Start(_edge.Gate.Config.WeightsFor(SimEdge.Database));
        _sim.Checks.Connections.OnExecute(this, server, spec);
        var result = await server.Host.ExecuteAsync(server, spec);
        ThrowIfGone();

        // The server connection's pump: bytes relayed, the unit completed.
        if (_qos is not null)
        {
            _qos.AddBytes(result.BytesRead, result.BytesWritten);
            _qos.Complete();
        }
        _sim.Checks.Connections.OnExecuted(this, server, result);
        if (result.ConnectionLost)
        {
            _sim.Trace.Write(_actor, $"{spec.Text} on {server}: connection lost");
            return new Reply("08006", $"mproxy: lost the connection to server {server.Host.Endpoint}: {result.Message}", Fatal: true);
        }
        if (captureToken && result.CommitLsn != 0)
        {
            _token = _token.After(new Lsn(result.CommitLsn), _sim.Clock.GetTimestamp());
            TokenTimeline = server.Host.Timeline;
        }
        TryRelease();
        _sim.Trace.Write(_actor, $"{spec.Text} on {server}: {(result.Succeeded ? "ok" : result.SqlState)}");
        return result.Succeeded ? Reply.Ok : new Reply(result.SqlState, result.Message, Fatal: false);
    }

    /// <summary>The transaction ended: the slot and the balancer's count go with the connection, which returns to the pool.</summary>
    private void TryRelease()
    {
        if (_server is not { } server || server.InTransaction || server.IsRunning)
            return;
        _qos?.ReleaseSlot();
        EndBalanced();
        server.Owner = 0;
        _server = null;
        var pool = _pool!;
        _pool = null;
        pool.Connections.Return(server);
    }

    private async Task<SimPool?> RouteAsync(StatementInfo info, StatementSpec spec)
    {
        var backends = _edge.Backends;
        var pinned = _sessionEffects != 0;
        var decision = backends.Route(info, pinned, _token);
        _sim.Checks.Connections.OnRoute(this, spec, decision);
        switch (decision.Target)
        {
            case RouteTarget.Primary:
            case RouteTarget.Replica:
                return _edge.PoolFor(decision.BackendIndex);
            case RouteTarget.WaitForPrimary:
                var primary = await _edge.WaitForPrimaryAsync();
                if (primary is not null)
                    return _edge.PoolFor(primary.Index);
                _qos?.Complete();
                Refuse("57P03", $"mproxy: no primary of database \"{SimEdge.Database}\" is available (waited {backends.Config.FailoverWait.TotalMilliseconds:0} ms)");
                return null;
            default:
                _qos?.Complete();
                Refuse("57P03", "mproxy: no replica can serve reads now and backends.primaryServesReads is off");
                return null;
        }
    }

    private async Task<bool> AttachWithinFailoverAsync(SimPool pool)
    {
        var backends = _edge.Backends;
        var started = _sim.Clock.GetTimestamp();
        var delay = TimeSpan.FromMilliseconds(50);
        while (true)
        {
            if (_qos is not null)
            {
                var slot = await AcquireSlotAsync(pool);
                ThrowIfGone();
                if (!slot.IsGranted)
                {
                    Refuse(slot.Rejection.SqlState, slot.Rejection.FormatMessage());
                    return false;
                }
            }
            try
            {
                await AttachNewServerAsync(pool);
                return true;
            }
            catch (Exception e) when (e is SimServerException or PoolTimeoutException)
            {
                _qos?.ReleaseSlot();
                var retry = e is SimServerException { SqlState: "57P03" }
                    && _sim.Clock.GetElapsedTime(started) + delay < backends.Config.FailoverWait;
                if (!retry)
                {
                    _qos?.Complete();
                    Refuse(e is SimServerException s ? s.SqlState : "53300", e.Message);
                    return false;
                }
                await _sim.Clock.Delay(delay);
                ThrowIfGone();
                delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, TimeSpan.FromSeconds(1).Ticks));
                var topology = backends.Topology;
                var isReplica = topology.PrimaryIndex != pool.HostIndex && pool.HostIndex < topology.Backends.Length
                    && topology.Backends[pool.HostIndex].Role != BackendRole.Primary;
                var next = isReplica ? topology.Primary ?? await _edge.WaitForPrimaryAsync() : await _edge.WaitForPrimaryAsync();
                ThrowIfGone();
                if (next is null)
                {
                    _qos?.Complete();
                    Refuse("57P03", $"mproxy: no primary of database \"{SimEdge.Database}\" is available (waited {backends.Config.FailoverWait.TotalMilliseconds:0} ms)");
                    return false;
                }
                pool = _edge.PoolFor(next.Index);
            }
            catch (PoolClosedException e)
            {
                // AcquireAsync in the PostgreSQL session: a closing pool is a FATAL error (57P01); the
                // session's cleanup (Close) releases the slot.
                _refusal = new Reply("57P01", e.Message, Fatal: true);
                return false;
            }
        }
    }

    /// <summary><see cref="QosSession.AcquireSlotAsync"/> on the synchronous core: begin, wait (up to the group's queue timeout or the pool's wait timeout), end.</summary>
    private async Task<QosSlotResult> AcquireSlotAsync(SimPool pool)
    {
        var scheduler = pool.Scheduler;
        var waiter = _qos!.BeginSlotWait(scheduler, out var result);
        if (waiter is null)
        {
            // Taken at once, or refused at once (CoDel dropping on arrival): only a taken slot could overtake a waiter.
            if (result.IsGranted)
                _sim.Checks.Priority.OnSlotTaken(scheduler, _admission.Priority);
            return result;
        }
        var group = _admission.Group;
        var timeout = group is { QueueTimeout.Ticks: > 0 } ? group.QueueTimeout : _edge.Options.Pool.WaitTimeout;
        using var timer = _sim.Clock.CreateTimer(static state => ((SchedulerWaiter)state!).Flow.Scheduler.Cancel((SchedulerWaiter)state!, WaitOutcome.TimedOut),
            waiter, timeout, Timeout.InfiniteTimeSpan);
        await _sim.SlotWaits.WaitAsync(waiter);
        var slot = _qos.EndSlotWait(waiter);
        if (!slot.IsGranted)
            _sim.Trace.Write(_actor, $"no slot on {pool.Name}: {slot.Rejection.Reason} after {SimTrace.Ms(slot.Waited)}");
        return slot;
    }

    private async Task AttachNewServerAsync(SimPool pool)
    {
        var server = await pool.Connections.AcquireAsync(CancellationToken.None);
        if (_closed)
        {
            // The edge died while this unit waited: its connections die with it.
            server.Close();
            ThrowIfGone();
        }
        _balancedSince = _edge.Backends.Balancer.Start(pool.HostIndex);
        _balanced = pool;
        _sim.Checks.Connections.OnAttach(this, server);
        server.Owner = Id;
        _server = server;
        _pool = pool;
        _serverIsPrimary = _edge.Backends.Topology.PrimaryIndex == pool.HostIndex;
    }

    private void EndBalanced()
    {
        if (_balanced is not { } pool)
            return;
        _balanced = null;
        _edge.Backends.Balancer.End(pool.HostIndex, _balancedSince);
    }

    private static readonly Reply Gone = new("08006", "the edge went away", Fatal: true);

    private void ThrowIfGone()
    {
        if (_closed)
            throw new SessionGoneException();
    }

    private sealed class SessionGoneException : Exception;

    private void Refuse(string sqlState, string message)
    {
        _sim.Trace.Write(_actor, $"refused: {sqlState} {message}");
        _refusal = new Reply(sqlState, message, Fatal: false);
    }

    private StatementInfo Classify(string text) =>
        StatementClassifier.Classify(Encoding.UTF8.GetBytes(text), SqlDialect.PostgreSql, _edge.Backends.Rules);

    /// <summary>The client disconnects (or the session ends on a fatal error): what the PostgreSQL session's cleanup does.</summary>
    public void Close(string reason)
    {
        if (_closed)
            return;
        _closed = true;
        _sim.Trace.Write(_actor, "closed: " + reason);
        if (_server is { } server)
        {
            var pool = _pool!;
            _server = null;
            _pool = null;
            server.Owner = 0;
            _sim.Checks.Connections.OnDetach(this, server);
            // PgServerConnection.DetachClient
            if (server.IsBroken)
            {
                pool.Connections.Return(server);
            }
            else if (server.IsRunning)
            {
                server.Host.Cancel(server, "canceling statement due to user request");
                pool.Connections.Discard(server, "its client left while a request was running");
            }
            else if (server.InTransaction)
            {
                _ = CleanAndReturnAsync(pool, server);
            }
            else
            {
                pool.Connections.Return(server);
            }
        }
        EndBalanced();
        _qos?.Dispose();
        _edge.Forget(this);
    }

    /// <summary>The edge process died under this session: nothing is cleaned, the client sees its connection drop.</summary>
    internal void Kill()
    {
        if (_closed)
            return;
        _closed = true;
        _sim.Trace.Write(_actor, "killed with its edge");
        if (_server is { } server)
        {
            _server = null;
            _pool = null;
            server.Owner = 0;
            _sim.Checks.Connections.OnDetach(this, server);
            server.Close();
        }
        _qos?.Dispose();
        _edge.Forget(this);
        _killed.TrySetResult();
    }

    /// <summary>PgPool.CleanAndReturnAsync: ROLLBACK what the departed client left open, then back to the pool.</summary>
    private static async Task CleanAndReturnAsync(SimPool pool, FakeServerConnection server)
    {
        var result = await server.Host.ExecuteAsync(server, Statements.Rollback);
        if (result.Succeeded && !server.InTransaction)
            pool.Connections.Return(server);
        else
            pool.Connections.Discard(server, "could not be cleaned after its client left: " + result.Message);
    }

    void IRunawayTarget.OnRunaway(QosSession session, RunawayHit hit, QosRejection cancel)
    {
        _sim.Trace.Write(_actor, $"runaway rule '{hit.Rule?.Name}' fired (cancel: {cancel.IsRejected})");
        if (!cancel.IsRejected || _server is not { IsRunning: true } server)
            return;
        // The cancel goes over a new connection to the server: a round trip later.
        var message = cancel.FormatMessage();
        _sim.Clock.After(server.Host.RoundTrip(), () =>
        {
            if (ReferenceEquals(_server, server) && server.IsRunning)
                server.Host.Cancel(server, message);
        });
    }
}
