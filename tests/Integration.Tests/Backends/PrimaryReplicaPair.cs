using Microsoft.Extensions.Logging.Abstractions;
using MProxy.Edge.Backends;
using MProxy.Edge.Configuration;
using MProxy.Edge.Networking;
using MProxy.Edge.Protocols.Postgres;
using MProxy.TestSupport;

namespace MProxy.Integration.Tests.Backends;

/// <summary>A real PostgreSQL primary with a streaming replica of its own, and helpers to monitor them.</summary>
public sealed class PrimaryReplicaPair : IAsyncLifetime
{
    private PostgresServer? _primary;
    private PostgresServer? _replica;

    public PostgresServer Primary => _primary ?? throw new InvalidOperationException("the primary did not start");

    public PostgresServer Replica => _replica ?? throw new InvalidOperationException("the replica did not start");

    public HostPort PrimaryEndpoint => new("127.0.0.1", Primary.Port);

    public HostPort ReplicaEndpoint => new("127.0.0.1", Replica.Port);

    /// <summary>A non-superuser that logs in with SCRAM: the monitor needs no privilege.</summary>
    public static MonitorCredentials Credentials => new(PostgresServer.AppUser, PostgresServer.Password, PostgresServer.AppDatabase);

    public async ValueTask InitializeAsync()
    {
        _primary = await PostgresServer.StartAsync(maxConnections: 50);
        _replica = await _primary.StartReplicaAsync();
        await Primary.ExecuteAsync("CREATE TABLE filler (id bigserial PRIMARY KEY, payload text)", PostgresServer.AppDatabase);
        await Primary.ExecuteAsync("GRANT ALL ON filler, filler_id_seq TO app", PostgresServer.AppDatabase);
    }

    public async ValueTask DisposeAsync()
    {
        if (_replica is not null)
            await _replica.DisposeAsync();
        if (_primary is not null)
            await _primary.DisposeAsync();
    }

    internal static PgBackendProbe Probe() =>
        new(Credentials, new SocketNetworkConnector(), TimeProvider.System, NullLogger.Instance);

    public BackendsConfig Config(TopologyMode mode = TopologyMode.Static) => new()
    {
        Mode = mode,
        Hosts = [PrimaryEndpoint, ReplicaEndpoint],
        Monitor = Credentials,
        HealthCheckInterval = TimeSpan.FromMilliseconds(200),
        HealthCheckTimeout = TimeSpan.FromSeconds(2),
        Breaker = new BreakerSettings { FailuresToOpen = 2, CooldownBase = TimeSpan.FromMilliseconds(200), CooldownMax = TimeSpan.FromSeconds(1), Jitter = 0.2 },
        MaxReplicaLag = null,
        MaxReplicaLagBytes = null,
        FailoverWait = TimeSpan.FromSeconds(60),
        Seed = 5,
    };

    /// <summary>Writes about <paramref name="bytes"/> bytes of table data (and more of WAL) on the primary.</summary>
    public Task WriteAsync(int bytes) =>
        Primary.ExecuteAsync($"INSERT INTO filler (payload) SELECT repeat('x', 1000) FROM generate_series(1, {Math.Max(1, bytes / 1000)})", PostgresServer.AppDatabase);
}

/// <summary>Awaits a topology that satisfies a condition, from the monitor's own event.</summary>
internal static class TopologyWaiter
{
    public static async Task<BackendTopology> WaitForAsync(BackendMonitor monitor, Func<BackendTopology, bool> condition, string what, TimeSpan? timeout = null)
    {
        var reached = new TaskCompletionSource<BackendTopology>(TaskCreationOptions.RunContinuationsAsynchronously);
        void OnChanged(BackendTopology topology)
        {
            if (condition(topology))
                reached.TrySetResult(topology);
        }
        monitor.TopologyChanged += OnChanged;
        try
        {
            OnChanged(monitor.Current);
            try
            {
                return await reached.Task.WaitAsync(timeout ?? TimeSpan.FromSeconds(60), TestContext.Current.CancellationToken);
            }
            catch (TimeoutException)
            {
                var current = monitor.Current;
                var state = string.Join("; ", current.Backends.Select(b => $"{b.Endpoint} {b.Role} {b.Breaker} {b.Eligibility} lsn={b.Lsn} lag={b.LagBytes}B/{b.LagTime} error={b.LastError}"));
                throw new TimeoutException($"waited in vain for {what}; primary {current.PrimaryIndex}: {state}");
            }
        }
        finally
        {
            monitor.TopologyChanged -= OnChanged;
        }
    }
}
