using MProxy.TestSupport;

namespace MProxy.Integration.Tests.MySql;

/// <summary>QoS group settings (<c>serverSettings</c>, <c>statementTimeoutMs</c>) on MySQL server connections, against MariaDB.</summary>
[Collection(MariaDbCollection.Name)]
public sealed class MySqlGroupSettingsTests(MariaDbFixture fixture)
{
    // One server connection (pool of 1), so every query below runs on the same MariaDB session.
    private string Config => MySqlEdgeServer.AppConfig(fixture.Server, poolSize: 1, waitTimeoutMs: 10000, extra: """
        qos:
          groups:
            - { name: std, ruPerSecond: 100000, burst: 100000, alternatives: [reports] }
            - name: reports
              ruPerSecond: 100000
              burst: 100000
              statementTimeoutMs: 400
              serverSettings: { sort_buffer_size: 1048576, sql_mode: STRICT_ALL_TABLES }
          tenants:
            - { name: app, group: std }
        """);

    private const string Hinted = "/* mproxy: group=reports */ ";

    /// <summary>sort_buffer_size, max_statement_time in ms, sql_mode, connection id, and whether sort_buffer_size and sql_mode are the server's defaults.</summary>
    private const string Probe = "SELECT CONCAT_WS('|', @@session.sort_buffer_size, ROUND(@@session.max_statement_time * 1000), @@session.sql_mode, CONNECTION_ID(), "
        + "@@session.sort_buffer_size = @@global.sort_buffer_size AND @@session.sql_mode = @@global.sql_mode)";

    private static async Task<MySqlRawClient> LoginAsync(MySqlEdgeServer edge)
    {
        var (client, answer) = await MySqlRawClient.LoginAsync(edge.Port, MariaDbServer.AppUser, MariaDbServer.Password, MariaDbServer.AppDatabase);
        Assert.True(answer.IsOk, answer.ErrorMessage);
        return client;
    }

    private static async Task<string[]> ProbeAsync(MySqlRawClient client, string prefix = "")
    {
        await client.SendQueryAsync(prefix + Probe);
        var result = await client.ReadResultAsync();
        Assert.False(result[^1].IsError, result[^1].ErrorMessage);
        return Assert.Single(MySqlRawClient.FirstColumn(result))!.Split('|');
    }

    [Fact]
    public async Task GroupSettings_AppliedWhileServingThatGroup_ThenBackToTheServersDefaults_OnTheSameConnection()
    {
        await using var edge = await MySqlEdgeServer.StartAsync(Config);
        await using var client = await LoginAsync(edge);

        var plain = await ProbeAsync(client);
        Assert.Equal("1", plain[4]);
        Assert.Equal("0", plain[1]);

        for (var i = 0; i < 2; i++)
        {
            var reports = await ProbeAsync(client, Hinted);
            Assert.Equal("1048576", reports[0]);
            Assert.Equal("400", reports[1]);
            Assert.Equal("STRICT_ALL_TABLES", reports[2]);
            Assert.Equal(plain[3], reports[3]); // the same server session

            var back = await ProbeAsync(client);
            Assert.Equal("1", back[4]);
            Assert.Equal("0", back[1]);
            Assert.Equal(plain[3], back[3]);
        }

        // The group's statement timeout interrupts a long statement; the session stays usable.
        await client.SendQueryAsync(Hinted + "SELECT SLEEP(5) FROM (SELECT 1 UNION ALL SELECT 2) AS t");
        var timedOut = await client.ReadResultAsync();
        Assert.True(timedOut[^1].IsError);
        Assert.Equal(1969, timedOut[^1].ErrorCode); // ER_STATEMENT_TIMEOUT
        Assert.Equal("1", (await ProbeAsync(client))[4]);
    }

    [Fact]
    public async Task ResetConnection_ForgetsTheAppliedGroup_SoItIsAppliedAgain()
    {
        await using var edge = await MySqlEdgeServer.StartAsync(Config);
        await using var client = await LoginAsync(edge);

        var first = await ProbeAsync(client, Hinted);
        Assert.Equal("1048576", first[0]);
        // COM_RESET_CONNECTION in a transaction keeps the connection attached through the reset.
        await client.SendQueryAsync(Hinted + "BEGIN");
        Assert.True((await client.ReadAsync()).IsOk);
        await client.SendCommandAsync(0x1F);
        Assert.True((await client.ReadAsync()).IsOk);

        // The server's session is back at its defaults; the edge must know and set the group again.
        var again = await ProbeAsync(client, Hinted);
        Assert.Equal("1048576", again[0]);
        Assert.Equal("400", again[1]);
        Assert.Equal("STRICT_ALL_TABLES", again[2]);
    }

    [Fact]
    public async Task AnotherClient_OnTheConnection_AfterAGroupedOne_SeesTheServersDefaults()
    {
        await using var edge = await MySqlEdgeServer.StartAsync(Config);
        await using var grouped = await LoginAsync(edge);
        await using var other = await LoginAsync(edge);

        var reports = await ProbeAsync(grouped, Hinted);
        Assert.Equal("1048576", reports[0]);
        var plain = await ProbeAsync(other);
        Assert.Equal(reports[3], plain[3]); // the pool's one connection
        Assert.Equal("1", plain[4]);
        Assert.Equal("0", plain[1]);
    }
}
