using MProxy.Simulation.Core;
using MProxy.Simulation.Edges;
using MProxy.Simulation.World;

namespace MProxy.Simulation.Workloads;

/// <summary>
/// One application connection of a tenant: connects to an edge, sends one request at a time
/// (autocommit statements, transactions — short, read-only, or idle for seconds — reports,
/// runaway queries, prepared statements, hinted statements), thinks in between, and reacts to
/// errors as its profile says (politely, or in a retry storm). It may disconnect at awkward moments:
/// while waiting for a reply, or idle inside a transaction. Every request goes through the ledger.
/// </summary>
public sealed class SimClient
{
    private readonly SimWorld _world;
    private readonly SimContext _sim;
    private readonly SimRandom _random;
    private readonly string _name;
    private SimSession? _session;

    public SimClient(SimWorld world, TenantSpec tenant, int index)
    {
        _world = world;
        _sim = world.Sim;
        Tenant = tenant;
        _name = $"{tenant.Name}.c{index}";
        _random = _sim.Random.Fork("client-" + _name);
    }

    public TenantSpec Tenant { get; }

    public bool Done { get; private set; }

    private ClientProfile Profile => Tenant.Profile;

    public async Task RunAsync()
    {
        await _sim.Clock.Delay(TimeSpan.FromMilliseconds(_random.Uniform(0, 1000)));
        var failures = 0;
        while (!_world.WorkloadOver)
        {
            if (_session is not { IsOpen: true } && !await ConnectAsync())
            {
                failures++;
                await _sim.Clock.Delay(TimeSpan.FromMilliseconds(Math.Min(2000, 50 * Math.Pow(2, Math.Min(failures, 6)))));
                continue;
            }
            failures = 0;
            await OneActionAsync();
            await ThinkAsync();
            if (_session is { IsOpen: true, HoldsServer: false } session && _random.Chance(Profile.ReconnectChance))
            {
                session.Close("client reconnects");
                _session = null;
            }
        }
        if (_session is { IsOpen: true } last)
        {
            if (last.HoldsServer)
                await SendAsync(Statements.Rollback);
            last.Close("client done");
        }
        _session = null;
        Done = true;
        _sim.Trace.Write(_name, "done");
    }

    private async Task<bool> ConnectAsync()
    {
        var edge = _world.PickEdge(_random);
        if (edge is null)
            return false;
        var session = edge.OpenSession(Tenant.Name);
        _sim.Trace.Write(_name, $"connects to {edge.Name} as {session}");
        var login = await session.LoginAsync();
        if (!login.Succeeded)
        {
            _sim.Trace.Write(_name, $"login failed: {login}");
            return false;
        }
        _session = session;
        if (_random.Chance(Profile.PinChance))
            await SendAsync(Statements.SetApplicationName);
        return true;
    }

    private Task ThinkAsync()
    {
        var now = _sim.Clock.Elapsed;
        foreach (var (from, to) in Tenant.Floods)
            if (now >= from && now < to)
                return _sim.Clock.Delay(TimeSpan.FromMilliseconds(_random.Uniform(0, 1)));
        return _sim.Clock.Delay(TimeSpan.FromMilliseconds(_random.Exponential(Profile.ThinkMs)));
    }

    private async Task OneActionAsync()
    {
        var p = Profile;
        var weights = new[] { p.PointReads, p.RangeReads, p.Writes, p.Transactions, p.ReadOnlyTransactions, p.LongTransactions, p.Reports, p.Runaways, p.Prepared, p.PrimaryHints };
        var pick = _random.NextDouble() * weights.Sum();
        var action = 0;
        while (action < weights.Length - 1 && pick >= weights[action])
            pick -= weights[action++];
        var table = Tenant.Table;
        var id = _random.Next(1, 100_000);
        switch (action)
        {
            case 0:
                await SendWithRetryAsync(Statements.PointRead(table, id));
                break;
            case 1:
                await SendWithRetryAsync(Statements.RangeRead(table, id));
                break;
            case 2:
                await SendWithRetryAsync(_random.Chance(0.7) ? Statements.Update(table, id, _random.Next(1, 10)) : Statements.Insert(table, id));
                break;
            case 3:
                await TransactionAsync(Statements.Begin, _random.Next(1, 5), readOnly: false, idleMs: 5);
                break;
            case 4:
                await TransactionAsync(Statements.BeginReadOnly, _random.Next(1, 4), readOnly: true, idleMs: 5);
                break;
            case 5:
                await TransactionAsync(Statements.Begin, _random.Next(2, 5), readOnly: false, idleMs: _random.Uniform(300, 4000));
                break;
            case 6:
                await SendWithRetryAsync(Statements.Report(table, _random.Next(1, 30)));
                break;
            case 7:
                await SendWithRetryAsync(Statements.Runaway(table, _random.Next(1, 48)));
                break;
            case 8:
                if (_session is { } session)
                    session.Prepare("read_" + table, Statements.PreparedReadText(table));
                for (var i = _random.Next(1, 4); i > 0 && _session is { IsOpen: true }; i--)
                    await SendWithRetryAsync(Statements.PreparedRead(table, _random.Next(1, 100_000)));
                break;
            default:
                await SendWithRetryAsync(Statements.PrimaryRead(table, id));
                break;
        }
    }

    private async Task TransactionAsync(StatementSpec begin, int statements, bool readOnly, double idleMs)
    {
        var reply = await SendWithRetryAsync(begin);
        if (!reply.Succeeded || _session is not { IsOpen: true })
            return;
        var table = Tenant.Table;
        for (var i = 0; i < statements; i++)
        {
            await _sim.Clock.Delay(TimeSpan.FromMilliseconds(_random.Exponential(idleMs)));
            if (_session is not { IsOpen: true } session)
                return;
            if (_random.Chance(Profile.DisconnectInTransactionChance))
            {
                // Leaves with the transaction open: the edge must roll it back before reusing the connection.
                session.Close("client disconnects inside a transaction");
                _session = null;
                return;
            }
            var id = _random.Next(1, 100_000);
            var statement = readOnly || _random.Chance(0.5) ? Statements.PointRead(table, id) : Statements.Update(table, id, 1);
            reply = await SendAsync(statement);
            if (reply.Fatal || _session is not { IsOpen: true })
                return;
            if (!reply.Succeeded)
            {
                await SendAsync(Statements.Rollback);
                return;
            }
        }
        await SendAsync(_random.Chance(0.1) ? Statements.Rollback : Statements.Commit);
    }

    /// <summary>Sends a statement outside a transaction, retrying refusals as the profile says.</summary>
    private async Task<Reply> SendWithRetryAsync(StatementSpec statement)
    {
        var storm = Profile.Retry == RetryPolicy.Storm;
        var attempts = storm ? 30 : 3;
        for (var attempt = 1; ; attempt++)
        {
            var reply = await SendAsync(statement);
            if (reply.Succeeded || reply.Fatal || attempt >= attempts || _session is not { IsOpen: true } || !Retryable(reply.SqlState))
                return reply;
            var delay = storm ? _random.Uniform(0, 2) : _random.Uniform(25, 50) * Math.Pow(2, attempt);
            await _sim.Clock.Delay(TimeSpan.FromMilliseconds(delay));
        }
    }

    private static bool Retryable(string? sqlState) => sqlState is "53300" or "53400" or "57P03" or "40001";

    /// <summary>One request: through the ledger; the client may walk away from it (its reply is then dropped).</summary>
    private async Task<Reply> SendAsync(StatementSpec statement)
    {
        var session = _session;
        if (session is not { IsOpen: true })
            return new Reply("08006", "not connected", Fatal: true);
        var ledger = _sim.Checks.Requests;
        var id = ledger.Issue(_name, session, statement.ToString());
        var unit = session.RunAsync(statement);
        var abandon = _random.Chance(Profile.AbandonChance);
        // One awaiter per task: a second await continuation would be run on the thread pool.
        var tracked = TrackAsync(id, session, unit, abandon);
        if (abandon)
        {
            // The client disconnects while it waits: the edge finishes the unit, then the session.
            ledger.Answer(id, null);
            _session = null;
            _sim.Trace.Write(_name, $"walks away from request {id}");
            return new Reply("08006", "client disconnected", Fatal: true);
        }
        await Task.WhenAny(tracked, session.Killed);
        var reply = tracked.IsCompleted ? tracked.Result : new Reply("08006", "connection reset: the edge went away", Fatal: true);
        ledger.Answer(id, reply);
        if (reply.Fatal && ReferenceEquals(_session, session))
            _session = null;
        return reply;
    }

    private async Task<Reply> TrackAsync(long id, SimSession session, Task<Reply> unit, bool abandoned)
    {
        var reply = await unit;
        _sim.Checks.Requests.Finish(id);
        if (abandoned)
            session.Close("client went away");
        return reply;
    }
}
