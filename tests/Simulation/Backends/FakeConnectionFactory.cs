using MProxy.Edge.Backends;
using MProxy.Edge.Pooling;
using MProxy.Simulation.Core;

namespace MProxy.Simulation.Backends;

/// <summary>
/// The protocol adapter's side of one pool (<see cref="IServerConnectionFactory{TConnection}"/>),
/// over a fake host: what <c>PgPool</c> does for PostgreSQL — connect within the connect timeout,
/// tell the monitor whether the host answered (unwell hosts count toward their breaker; a full
/// server does not), run the check query, close.
/// </summary>
public sealed class FakeConnectionFactory(SimContext sim, FakeHost host, string pool, int edge, TimeSpan connectTimeout, BackendMonitor? monitor)
    : IServerConnectionFactory<FakeServerConnection>
{
    /// <summary>Connections opened and not closed (checked against the pool's size).</summary>
    public int Live { get; private set; }

    /// <summary>Opens in progress.</summary>
    public int Opening { get; private set; }

    public long Opened { get; private set; }

    public async ValueTask<FakeServerConnection> OpenAsync(CancellationToken cancellationToken)
    {
        sim.Clock.CheckThread("FakeConnectionFactory.OpenAsync");
        using var timeout = new CancellationTokenSource(connectTimeout, sim.Clock);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
        Opening++;
        try
        {
            var connection = await ConnectAsync(linked.Token);
            Live++;
            Opened++;
            monitor?.ReportConnectSuccess(host.Index);
            sim.Trace.Write(pool, $"opened {connection}");
            return connection;
        }
        catch (Exception e)
        {
            var reason = e is OperationCanceledException && timeout.IsCancellationRequested
                ? $"no answer within {connectTimeout.TotalMilliseconds:0} ms"
                : e.Message;
            sim.Trace.Write(pool, $"open failed: {reason}");
            if (e is OperationCanceledException && !timeout.IsCancellationRequested)
                throw;
            // Like PgPool: a refused or silent host counts toward its breaker; a full server does not.
            var sqlState = (e as SimServerException)?.SqlState;
            if (sqlState is null or "08006")
                monitor?.ReportConnectFailure(host.Index, reason);
            throw new SimServerException("57P03", $"mproxy: cannot connect to server {host.Endpoint} for pool {pool}: {reason}");
        }
        finally
        {
            Opening--;
        }
    }

    private Task<FakeServerConnection> ConnectAsync(CancellationToken cancellationToken)
    {
        var done = new TaskCompletionSource<FakeServerConnection>();
        var registration = cancellationToken.Register(() => done.TrySetCanceled(cancellationToken));
        // TCP handshake and the login exchange: a few round trips.
        sim.Clock.After(host.RoundTrip() * 3, () => host.WhenResponsive(() =>
        {
            registration.Dispose();
            if (done.Task.IsCompleted)
                return;
            try
            {
                var connection = host.Accept(pool, edge);
                if (!done.TrySetResult(connection))
                    connection.Close();
            }
            catch (SimServerException e)
            {
                done.TrySetException(e);
            }
        }));
        return done.Task;
    }

    public async ValueTask<bool> CheckAsync(FakeServerConnection connection, CancellationToken cancellationToken)
    {
        sim.Clock.CheckThread("FakeConnectionFactory.CheckAsync");
        var done = new TaskCompletionSource<bool>();
        using var timeout = new CancellationTokenSource(connectTimeout, sim.Clock);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
        using var registration = linked.Token.Register(() => done.TrySetResult(false));
        sim.Clock.After(host.RoundTrip(), () => host.WhenResponsive(() => done.TrySetResult(!connection.IsBroken && !connection.InTransaction)));
        var ok = await done.Task;
        cancellationToken.ThrowIfCancellationRequested();
        sim.Trace.Write(pool, $"check {connection}: {(ok ? "ok" : "failed")}");
        return ok;
    }

    public void Close(FakeServerConnection connection, string reason)
    {
        sim.Clock.CheckThread("FakeConnectionFactory.Close");
        if (connection.Owner != 0)
            sim.Checks.Fail("exclusive-connection", $"{connection} closed by pool {pool} ({reason}) while session {connection.Owner} is attached to it");
        if (!connection.Closed)
            Live--;
        connection.Close();
        sim.Trace.Write(pool, $"closed {connection}: {reason}");
    }
}
