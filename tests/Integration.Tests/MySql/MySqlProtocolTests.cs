using System.Globalization;
using System.Text;
using MProxy.TestSupport;
using MySql.Data.MySqlClient;

namespace MProxy.Integration.Tests.MySql;

/// <summary>Authentication, malformed packets, COM_CHANGE_USER, COM_RESET_CONNECTION, LOAD DATA LOCAL and QoS refusals on the MySQL listener.</summary>
[Collection(MariaDbCollection.Name)]
public sealed class MySqlProtocolTests(MariaDbFixture fixture) : IAsyncLifetime
{
    private MySqlEdgeServer? _edge;

    private MySqlEdgeServer Edge => _edge!;

    private MariaDbServer Server => fixture.Server;

    public async ValueTask InitializeAsync() => _edge = await MySqlEdgeServer.StartAsync(MySqlEdgeServer.AppConfig(Server, extra: "clients:\n  maxMessageBytes: 1048576\n"));

    public async ValueTask DisposeAsync() => await Edge.DisposeAsync();

    [Fact]
    public async Task Login_RightPassword_Succeeds_WrongPasswordOrUnknownUser_Gets1045()
    {
        await using (var ok = await MariaDbFixture.OpenAsync(Edge.Port))
            Assert.Equal(1L, Convert.ToInt64(await MariaDbFixture.ScalarAsync(ok, "SELECT 1"), CultureInfo.InvariantCulture));

        // MySql.Data wraps the server's 1045 in an "Authentication … failed" exception.
        var wrong = await Assert.ThrowsAsync<MySqlException>(() => MariaDbFixture.OpenAsync(Edge.Port, password: "wrong"));
        Assert.Contains("mproxy: Access denied for user 'app'", wrong.Message);
        var unknown = await Assert.ThrowsAsync<MySqlException>(() => MariaDbFixture.OpenAsync(Edge.Port, user: "nobody"));
        Assert.Contains("mproxy: Access denied for user 'nobody'", unknown.Message);
        var (raw, answer) = await MySqlRawClient.LoginAsync(Edge.Port, MariaDbServer.AppUser, "wrong", MariaDbServer.AppDatabase);
        await using var _ = raw;
        Assert.Equal(1045, answer.ErrorCode);
        Assert.Equal("28000", answer.SqlState);
        Assert.Equal(2, answer.Sequence);
    }

    [Fact]
    public async Task Login_UnknownDatabase_Gets1049()
    {
        var (client, answer) = await MySqlRawClient.LoginAsync(Edge.Port, MariaDbServer.AppUser, MariaDbServer.Password, "nope");
        await using var _ = client;
        Assert.True(answer.IsError);
        Assert.Equal(1049, answer.ErrorCode);
        Assert.Equal("42000", answer.SqlState);
        Assert.StartsWith("mproxy:", answer.ErrorMessage);
    }

    [Fact]
    public async Task CommandLineClient_WrongPassword_FailsWithAccessDenied()
    {
        var result = await MariaDbServer.RunClientAsync(Edge.Port, MariaDbServer.AppUser, "wrong", MariaDbServer.AppDatabase, "SELECT 1;\n");
        Assert.NotEqual(0, result.ExitCode);
        Assert.Contains("1045", result.Output);
        Assert.Contains("mproxy:", result.Output);
    }

    [Fact]
    public async Task MalformedPacket_ClosesThatClientOnly_WithAnError()
    {
        await using var bystander = await MariaDbFixture.OpenAsync(Edge.Port);
        var (client, answer) = await MySqlRawClient.LoginAsync(Edge.Port, MariaDbServer.AppUser, MariaDbServer.Password, MariaDbServer.AppDatabase);
        await using var _ = client;
        Assert.True(answer.IsOk);
        // COM_STMT_EXECUTE too short to hold a statement id.
        await client.SendCommandAsync(0x17, [1]);
        var error = await client.ReadAsync();
        Assert.Equal(1156, error.ErrorCode);
        Assert.StartsWith("mproxy:", error.ErrorMessage);
        Assert.True(await client.IsClosedAsync());
        Assert.Equal(2L, Convert.ToInt64(await MariaDbFixture.ScalarAsync(bystander, "SELECT 2"), CultureInfo.InvariantCulture));
    }

    [Fact]
    public async Task OversizedPacket_IsRefusedWith1153_AndTheConnectionCloses()
    {
        var (client, answer) = await MySqlRawClient.LoginAsync(Edge.Port, MariaDbServer.AppUser, MariaDbServer.Password, MariaDbServer.AppDatabase);
        await using var _ = client;
        Assert.True(answer.IsOk);
        // A header announcing 2 MiB over the configured 1 MiB limit; the body never needs to come.
        await client.SendRawAsync([0x00, 0x00, 0x20, 0x00, 0x03]);
        var error = await client.ReadAsync();
        Assert.Equal(1153, error.ErrorCode);
        Assert.True(await client.IsClosedAsync());
    }

    [Fact]
    public async Task GarbageInsteadOfHandshakeResponse_GetsAnErrorAndClose()
    {
        await using var client = await MySqlRawClient.ConnectAsync(Edge.Port);
        await client.ReadGreetingAsync();
        await client.SendAsync(1, [1, 2, 3]);
        var error = await client.ReadAsync();
        Assert.True(error.IsError);
        Assert.True(await client.IsClosedAsync());
    }

    [Fact]
    public async Task ChangeUser_SwitchesUserAndDatabase_AndDropsSessionState()
    {
        var (client, answer) = await MySqlRawClient.LoginAsync(Edge.Port, MariaDbServer.AppUser, MariaDbServer.Password, MariaDbServer.AppDatabase);
        await using var _ = client;
        Assert.True(answer.IsOk);
        await client.SendQueryAsync("SET @v = 'kept?'");
        Assert.True((await client.ReadResultAsync())[0].IsOk);

        // COM_CHANGE_USER: user, scramble of the login nonce, database, charset, plugin.
        var scramble = MProxy.Edge.Protocols.MySql.MySqlAuth.NativePassword(MariaDbServer.Password, client.Nonce);
        byte[] payload = [0x11, .. Encoding.UTF8.GetBytes(MariaDbServer.OtherUser), 0, (byte)scramble.Length, .. scramble,
            .. Encoding.UTF8.GetBytes(MariaDbServer.OtherDatabase), 0, 45, 0, .. Encoding.UTF8.GetBytes("mysql_native_password"), 0];
        await client.SendAsync(0, payload);
        var changed = await client.ReadAsync();
        Assert.True(changed.IsOk, changed.ErrorMessage);

        await client.SendQueryAsync("SELECT CONCAT(CURRENT_USER(), ' ', DATABASE(), ' ', IFNULL(@v, 'none'))");
        var value = Assert.Single(MySqlRawClient.FirstColumn(await client.ReadResultAsync()));
        Assert.Equal("other@% other none", value);
    }

    [Fact]
    public async Task ChangeUser_WrongPassword_AfterAuthSwitch_IsDenied()
    {
        var (client, answer) = await MySqlRawClient.LoginAsync(Edge.Port, MariaDbServer.AppUser, MariaDbServer.Password, MariaDbServer.AppDatabase);
        await using var _ = client;
        Assert.True(answer.IsOk);
        byte[] payload = [0x11, .. Encoding.UTF8.GetBytes(MariaDbServer.OtherUser), 0, 1, 0x42, .. Encoding.UTF8.GetBytes(MariaDbServer.OtherDatabase), 0, 45, 0];
        await client.SendAsync(0, payload);
        var switchRequest = await client.ReadAsync();
        Assert.Equal(0xFE, switchRequest.Payload[0]);
        await client.SendAsync((byte)(switchRequest.Sequence + 1), MProxy.Edge.Protocols.MySql.MySqlAuth.NativePassword("wrong", switchRequest.Payload.AsSpan(22, 20)));
        var denied = await client.ReadAsync();
        Assert.Equal(1045, denied.ErrorCode);
        Assert.True(await client.IsClosedAsync());
    }

    [Fact]
    public async Task ResetConnection_DropsUserVariablesAndStatements_AndUnpins()
    {
        var (client, answer) = await MySqlRawClient.LoginAsync(Edge.Port, MariaDbServer.AppUser, MariaDbServer.Password, MariaDbServer.AppDatabase);
        await using var _ = client;
        Assert.True(answer.IsOk);
        await client.SendQueryAsync("SET @v = 1");
        Assert.True((await client.ReadResultAsync())[0].IsOk);
        await client.SendCommandAsync(0x1F);
        var reset = await client.ReadAsync();
        Assert.True(reset.IsOk, reset.ErrorMessage);
        await client.SendQueryAsync("SELECT IFNULL(@v, 'gone')");
        Assert.Equal("gone", Assert.Single(MySqlRawClient.FirstColumn(await client.ReadResultAsync())));
        // Unpinned: the connection goes back to the pool just after the edge has relayed the result.
        var pools = Edge.Get<MProxy.Edge.Protocols.MySql.MySqlPoolRegistry>();
        for (var i = 0; i < 500 && pools.All.Any(p => p.Connections.GetStats().Total != p.Connections.GetStats().Idle); i++)
            await Task.Delay(10, TestContext.Current.CancellationToken);
        Assert.All(pools.All, p => Assert.Equal(p.Connections.GetStats().Total, p.Connections.GetStats().Idle));
    }

    [Fact]
    public async Task PingAndInitDbOfTheSameDatabase_AreAnsweredWithoutAServer()
    {
        var (client, answer) = await MySqlRawClient.LoginAsync(Edge.Port, MariaDbServer.AppUser, MariaDbServer.Password, MariaDbServer.AppDatabase);
        await using var _ = client;
        Assert.True(answer.IsOk);
        await client.SendCommandAsync(0x0E);
        Assert.True((await client.ReadAsync()).IsOk);
        await client.SendCommandAsync(0x02, Encoding.UTF8.GetBytes(MariaDbServer.AppDatabase));
        var ok = await client.ReadAsync();
        Assert.True(ok.IsOk);
        Assert.Equal(1, ok.Sequence);
    }

    [Fact]
    public async Task LoadDataLocal_IsRefusedClearly_UnlessEnabled()
    {
        await Server.ExecuteAsync("CREATE TABLE IF NOT EXISTS load_test (a INT, b VARCHAR(10))", MariaDbServer.AppDatabase);
        var file = Path.Combine(Path.GetTempPath(), $"mproxy-load-{Guid.NewGuid():N}.csv");
        await File.WriteAllTextAsync(file, "1,x\n2,y\n3,z\n");
        try
        {
            var sql = $"LOAD DATA LOCAL INFILE '{file}' INTO TABLE load_test FIELDS TERMINATED BY ',';\n";
            var refused = await MariaDbServer.RunClientAsync(Edge.Port, MariaDbServer.AppUser, MariaDbServer.Password, MariaDbServer.AppDatabase, sql, "--local-infile=1");
            Assert.NotEqual(0, refused.ExitCode);
            Assert.Contains("1148", refused.Output);
            Assert.Contains("mproxy: LOAD DATA LOCAL is not enabled", refused.Output);

            await using var enabled = await MySqlEdgeServer.StartAsync(MySqlEdgeServer.AppConfig(Server, databaseExtra: "    allowLoadDataLocal: true"));
            var loaded = await MariaDbServer.RunClientAsync(enabled.Port, MariaDbServer.AppUser, MariaDbServer.Password, MariaDbServer.AppDatabase,
                "DELETE FROM load_test; " + sql + "SELECT SUM(a) FROM load_test;\n", "--local-infile=1");
            Assert.True(loaded.ExitCode == 0, loaded.Output);
            Assert.Equal("6", loaded.Stdout.Trim());
        }
        finally
        {
            File.Delete(file);
        }
    }

    [Fact]
    public async Task BudgetExhausted_IsAnErrPacket1226_AndTheSessionStaysUsable()
    {
        await using var edge = await MySqlEdgeServer.StartAsync(MySqlEdgeServer.AppConfig(Server, extra: """
            qos:
              groups:
                - { name: tiny, ruPerSecond: 1, burst: 3, debtMax: 1, maxBudgetWaitMs: 0 }
              tenants:
                - { name: app, group: tiny }
            """));
        var (client, answer) = await MySqlRawClient.LoginAsync(edge.Port, MariaDbServer.AppUser, MariaDbServer.Password, MariaDbServer.AppDatabase);
        await using var _ = client;
        Assert.True(answer.IsOk);
        MySqlWirePacket? refusal = null;
        for (var i = 0; i < 20 && refusal is null; i++)
        {
            await client.SendQueryAsync("SELECT 1");
            var result = await client.ReadResultAsync();
            if (result[^1].IsError)
                refusal = result[^1];
        }
        Assert.NotNull(refusal);
        Assert.Equal(1226, refusal.Value.ErrorCode);
        Assert.Equal(1, refusal.Value.Sequence);
        Assert.StartsWith("mproxy: RU budget exhausted for tenant 'app'", refusal.Value.ErrorMessage);
        Assert.Contains("[53400]", refusal.Value.ErrorMessage);
        // The refused session stays usable: a ping needs no budget.
        await client.SendCommandAsync(0x0E);
        Assert.True((await client.ReadAsync()).IsOk);
    }

    [Fact]
    public async Task RunawayCancelRule_KillsTheQuery_With1317NamingTheRule_AndTheSessionStaysUsable()
    {
        await using var edge = await MySqlEdgeServer.StartAsync(MySqlEdgeServer.AppConfig(Server, extra: """
            qos:
              groups:
                - { name: std, ruPerSecond: 100000, burst: 100000 }
              tenants:
                - { name: app, group: std }
              runaway:
                rules:
                  - { name: too-long, tenant: app, maxElapsedMs: 300, action: cancel }
            """));
        var (client, answer) = await MySqlRawClient.LoginAsync(edge.Port, MariaDbServer.AppUser, MariaDbServer.Password, MariaDbServer.AppDatabase);
        await using var _ = client;
        Assert.True(answer.IsOk);
        await client.SendQueryAsync("SELECT SLEEP(20)");
        var result = await client.ReadResultAsync();
        var error = result[^1];
        Assert.Equal(1317, error.ErrorCode);
        Assert.Equal("70100", error.SqlState);
        Assert.StartsWith("mproxy: query cancelled for tenant 'app' by runaway rule 'too-long'", error.ErrorMessage);
        Assert.Contains("[57014]", error.ErrorMessage);
        await client.SendQueryAsync("SELECT 5");
        Assert.Equal("5", Assert.Single(MySqlRawClient.FirstColumn(await client.ReadResultAsync())));
    }

    [Fact]
    public async Task SeveralStatements_WithoutMultiStatementsCapability_AreRefused_UntilSetOptionTurnsThemOn()
    {
        var (client, answer) = await MySqlRawClient.LoginAsync(Edge.Port, MariaDbServer.AppUser, MariaDbServer.Password, MariaDbServer.AppDatabase, withoutCapabilities: 1u << 16);
        await using var _ = client;
        Assert.True(answer.IsOk);
        await client.SendQueryAsync("SELECT 1; SELECT 2");
        var refused = Assert.Single(await client.ReadResultAsync());
        Assert.Equal(1064, refused.ErrorCode);
        Assert.StartsWith("mproxy:", refused.ErrorMessage);
        await client.SendCommandAsync(0x1B, [0, 0]); // COM_SET_OPTION MULTI_STATEMENTS_ON
        Assert.True((await client.ReadAsync()).IsEof);
        await client.SendQueryAsync("SELECT 1; SELECT 2");
        Assert.Equal(["1", "2"], MySqlRawClient.FirstColumn(await client.ReadResultAsync()));
    }

    [Fact]
    public async Task FieldListAndStatistics_AreRelayed()
    {
        await Server.ExecuteAsync("CREATE TABLE IF NOT EXISTS field_list_test (a INT, b VARCHAR(5))", MariaDbServer.AppDatabase);
        var (client, answer) = await MySqlRawClient.LoginAsync(Edge.Port, MariaDbServer.AppUser, MariaDbServer.Password, MariaDbServer.AppDatabase);
        await using var _ = client;
        Assert.True(answer.IsOk);
        await client.SendCommandAsync(0x04, [.. Encoding.UTF8.GetBytes("field_list_test"), 0]);
        var columns = 0;
        while (!(await client.ReadAsync()).IsEof)
            columns++;
        Assert.Equal(2, columns);
        await client.SendCommandAsync(0x09);
        Assert.Contains("Uptime", Encoding.ASCII.GetString((await client.ReadAsync()).Payload));
        await client.SendQueryAsync("SELECT 3");
        Assert.Equal("3", Assert.Single(MySqlRawClient.FirstColumn(await client.ReadResultAsync())));
    }
}
