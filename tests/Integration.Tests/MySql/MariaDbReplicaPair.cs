using System.Diagnostics;
using MProxy.TestSupport;

namespace MProxy.Integration.Tests.MySql;

/// <summary>
/// Two real MariaDB servers: a primary (<c>server_id=1</c>, binary log in ROW format) and a replica
/// (<c>server_id=2</c>, <c>read_only=1</c>) replicating from it by GTID (<c>MASTER_USE_GTID=slave_pos</c>).
/// The replica logs what it applies (<c>log_slave_updates</c>), so it can be promoted.
/// </summary>
/// <remarks>
/// Logins besides <see cref="MariaDbServer"/>'s: <see cref="ReplicationUser"/> (REPLICATION SLAVE) and
/// <see cref="MonitorUser"/> (SLAVE MONITOR, for <c>SHOW SLAVE STATUS</c>), created on the primary
/// after replication starts, so the replica gets them through replication.
/// </remarks>
public sealed class MariaDbReplicaPair : IAsyncLifetime
{
    public const string ReplicationUser = "repl";
    public const string MonitorUser = "mproxy_monitor";

    private MariaDbServer? _primary;
    private MariaDbServer? _replica;

    public MariaDbServer Primary => _primary ?? throw new InvalidOperationException("the primary did not start");

    public MariaDbServer Replica => _replica ?? throw new InvalidOperationException("the replica did not start");

    public async ValueTask InitializeAsync()
    {
        string[] common = ["--log-bin=mysql-bin", "--binlog-format=ROW", "--log-slave-updates=ON", "--gtid-strict-mode=ON"];
        // One after the other: a mariadb-install-db run next to another once failed here.
        _primary = await MariaDbServer.StartAsync(maxConnections: 100, ["--server-id=1", .. common]);
        _replica = await MariaDbServer.StartAsync(maxConnections: 100, ["--server-id=2", "--read-only=ON", .. common]);
        // Both servers created the same logins and databases on their own: start both binary logs
        // empty, so that the replica applies only what the primary does from now on.
        await Primary.ExecuteAsync("RESET MASTER;");
        await Replica.ExecuteAsync("RESET MASTER; SET GLOBAL gtid_slave_pos = '';");
        await Primary.ExecuteAsync($"""
            CREATE USER '{ReplicationUser}'@'%' IDENTIFIED BY '{MariaDbServer.Password}';
            GRANT REPLICATION SLAVE ON *.* TO '{ReplicationUser}'@'%';
            """);
        await Replica.ExecuteAsync($"""
            CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={Primary.Port}, MASTER_USER='{ReplicationUser}',
              MASTER_PASSWORD='{MariaDbServer.Password}', MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1;
            START SLAVE;
            """);
        await Primary.ExecuteAsync($"""
            CREATE USER '{MonitorUser}'@'%' IDENTIFIED BY '{MariaDbServer.Password}';
            GRANT SLAVE MONITOR ON *.* TO '{MonitorUser}'@'%';
            CREATE TABLE {MariaDbServer.AppDatabase}.items (id INT PRIMARY KEY, name VARCHAR(50));
            INSERT INTO {MariaDbServer.AppDatabase}.items VALUES (1, 'one');
            """);
        await WaitForReplicaAsync();
    }

    /// <summary>Waits (bounded) until the replica has applied everything the primary has logged.</summary>
    public async Task WaitForReplicaAsync()
    {
        var target = await Primary.ExecuteAsync("SELECT @@global.gtid_binlog_pos");
        var clock = Stopwatch.StartNew();
        while (true)
        {
            var applied = await Replica.ExecuteAsync($"SELECT MASTER_GTID_WAIT('{target}', 1)");
            if (applied.Trim() == "0")
                return;
            if (clock.Elapsed > TimeSpan.FromSeconds(60))
            {
                var status = await Replica.ExecuteAsync("SHOW SLAVE STATUS\\G");
                throw new TimeoutException($"the replica did not reach {target} within 60 s:\n{status}\n{Replica.ReadLog()}");
            }
        }
    }

    /// <summary>
    /// Promotes the replica the way an operator does: stop replicating, forget the primary, accept writes.
    /// </summary>
    public Task PromoteReplicaAsync() =>
        Replica.ExecuteAsync("STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only = 0;");

    /// <summary>
    /// YAML for an edge serving database <c>app</c> from this pair (health checks every 100 ms by the
    /// monitor user, no lag bound so that the replica serves reads as soon as it has been probed).
    /// </summary>
    public string EdgeConfig(string poolMode = "transaction", string backendsExtra = "") => $"""
        auth:
          method: md5
        users:
          - name: {MariaDbServer.AppUser}
            password: {MariaDbServer.Password}
        pool:
          mode: {poolMode}
          size: 4
          waitTimeoutMs: 5000
        databases:
          - name: {MariaDbServer.AppDatabase}
            protocol: mysql
            backends:
              primary: 127.0.0.1:{Primary.Port}
              replicas: [127.0.0.1:{Replica.Port}]
              monitor: {"{"} user: {MonitorUser}, password: {MariaDbServer.Password} {"}"}
              healthCheck: {"{"} intervalMs: 100, timeoutMs: 2000 {"}"}
              breaker: {"{"} failuresToOpen: 2, cooldownMs: 200, cooldownMaxMs: 1000 {"}"}
              maxReplicaLagMs: 0
              failoverWaitMs: 30000
        {backendsExtra}
        """;

    public async ValueTask DisposeAsync()
    {
        if (_replica is not null)
            await _replica.DisposeAsync();
        if (_primary is not null)
            await _primary.DisposeAsync();
    }
}
