using Microsoft.Extensions.Logging.Abstractions;
using MProxy.Edge.Backends;
using MProxy.Edge.Configuration;
using MProxy.Edge.Networking;
using MProxy.Edge.Protocols.MySql;
using MProxy.TestSupport;

namespace MProxy.Edge.Tests.Protocols.MySql;

/// <summary>The MariaDB health check: GTID positions, role rules, result-set reading, and the probe against a scripted server.</summary>
public sealed class MySqlBackendProbeTests
{
    private static readonly string[] VariableColumns = ["@@global.read_only", "@@global.gtid_domain_id", "@@global.gtid_binlog_pos", "@@global.gtid_slave_pos"];
    private static readonly string[] SlaveColumns = ["Slave_IO_State", "Master_Host", "Seconds_Behind_Master", "Gtid_IO_Pos"];

    [Theory]
    [InlineData("0-1-42", 0u, 42ul)]
    [InlineData("0-1-42,1-3-7", 1u, 7ul)]
    [InlineData("1-3-7, 0-2-9000000000", 0u, 9_000_000_000ul)]
    [InlineData("1-3-7", 0u, 0ul)]
    [InlineData("", 0u, 0ul)]
    [InlineData(null, 0u, 0ul)]
    [InlineData("3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5", 0u, 0ul)] // MySQL's (Oracle) format: not understood
    [InlineData("0-x-5,0-1-3", 0u, 3ul)]
    public void GtidSequence_PicksTheDomainsSequenceNumber(string? gtids, uint domain, ulong expected) =>
        Assert.Equal(expected, MySqlBackendProbe.GtidSequence(gtids, domain));

    [Fact]
    public void Interpret_NotReadOnly_NoReplication_IsPrimary_AtTheHigherOfBinlogAndSlavePosition()
    {
        var result = MySqlBackendProbe.Interpret(Variables("0", "0", "0-1-120", "0-1-100"), Status());
        Assert.True(result.Succeeded);
        Assert.False(result.InRecovery);
        Assert.Equal(new Lsn(120), result.Lsn);
        Assert.Equal(0u, result.Timeline);

        // A promoted replica: its binary log may lag what it applied as a replica (log_slave_updates off).
        Assert.Equal(new Lsn(300), MySqlBackendProbe.Interpret(Variables("0", "0", "0-2-5", "0-1-300"), Status()).Lsn);
    }

    [Fact]
    public void Interpret_SlaveStatusRow_IsReplica_WithReplayAgeAndReceivedPosition()
    {
        var result = MySqlBackendProbe.Interpret(Variables("0", "0", "0-1-90", "0-1-90"), Status(["Waiting for master", "10.0.0.1", "3", "0-1-95"]));
        Assert.True(result.InRecovery);
        Assert.Equal(new Lsn(90), result.Lsn);
        Assert.Equal(new Lsn(95), result.ReceiveLsn);
        Assert.Equal(TimeSpan.FromSeconds(3), result.ReplayAge);
    }

    [Fact]
    public void Interpret_StoppedReplication_NullSecondsBehind_IsReplicaWithoutReplayAge()
    {
        var result = MySqlBackendProbe.Interpret(Variables("0", "0", "", "0-1-7"), Status(["", "10.0.0.1", null, "0-1-7"]));
        Assert.True(result.InRecovery);
        Assert.Equal(new Lsn(7), result.Lsn);
        Assert.Null(result.ReplayAge);
    }

    [Fact]
    public void Interpret_ReadOnly_WithoutSlaveStatusPrivilege_IsReplica()
    {
        var result = MySqlBackendProbe.Interpret(Variables("1", "2", "2-1-50", "0-1-999"), slaveStatus: null);
        Assert.True(result.InRecovery);
        Assert.Equal(new Lsn(50), result.Lsn); // domain 2 only
        Assert.Null(result.ReplayAge);
        Assert.True(MySqlBackendProbe.Interpret(Variables("ON", "0", "", ""), Status()).InRecovery);
    }

    [Fact]
    public void Interpret_UnexpectedShape_Throws()
    {
        var noRow = MySqlTextResult.Parse(MySqlServerMock.ResultSet(VariableColumns, []));
        Assert.Throws<IOException>(() => MySqlBackendProbe.Interpret(noRow, Status()));
        Assert.Throws<IOException>(() => MySqlBackendProbe.Interpret(Variables("0", "zero", "", ""), Status()));
    }

    [Fact]
    public void TextResult_Parse_ReadsColumnsRowsNullsAndTheMoreResultsFlag()
    {
        var result = MySqlTextResult.Parse(MySqlServerMock.ResultSet(["a", "B"], [["1", null], ["", "x"]], moreResults: true));
        Assert.Equal(["a", "B"], result.Columns);
        Assert.Equal(1, result.IndexOf("b"));
        Assert.Equal(-1, result.IndexOf("c"));
        Assert.Equal(2, result.Rows.Count);
        Assert.Equal<IEnumerable<string?>>(["1", null], result.Rows[0]);
        Assert.Equal<IEnumerable<string?>>(["", "x"], result.Rows[1]);
        Assert.True(result.MoreResults);

        var ok = MySqlTextResult.Parse([MySqlServerMock.Ok()]);
        Assert.Empty(ok.Columns);
        Assert.False(ok.MoreResults);
    }

    [Fact]
    public void TextResult_Parse_Error_ThrowsWithTheServersCode()
    {
        var e = Assert.Throws<MySqlServerLoginException>(() => MySqlTextResult.Parse([MySqlServerMock.Error(1227, "42000", "Access denied; you need (at least one of) the SLAVE MONITOR privilege(s)")]));
        Assert.Equal(1227, e.Code);
        Assert.Equal("42000", e.SqlState);
        Assert.Throws<MySqlServerLoginException>(() => MySqlTextResult.Parse(MySqlServerMock.ResultSet(["a"], [["1"]]).SkipLast(1)));
    }

    [Fact]
    public async Task ProbeAsync_ScriptedReplica_SendsOneQuery_AndReusesItsConnection()
    {
        await using var server = new MySqlServerMock
        {
            Answer = _ => [.. MySqlServerMock.ResultSet(VariableColumns, [["1", "0", "0-1-10", "0-1-12"]], moreResults: true),
                .. MySqlServerMock.ResultSet(SlaveColumns, [["Waiting", "db1", "0", "0-1-12"]])],
        };
        await using var probe = NewProbe();
        var endpoint = new HostPort("127.0.0.1", server.Port);
        var first = await probe.ProbeAsync(endpoint, CancellationToken.None);
        var second = await probe.ProbeAsync(endpoint, CancellationToken.None);
        Assert.True(first.Succeeded, first.Error);
        Assert.True(first.InRecovery);
        Assert.Equal(new Lsn(12), first.Lsn);
        Assert.Equal(TimeSpan.Zero, first.ReplayAge);
        Assert.Equal(first, second);
        Assert.Equal(1, server.ConnectionCount);
        Assert.Equal([MySqlBackendProbe.Query, MySqlBackendProbe.Query], server.Queries);
    }

    [Fact]
    public async Task ProbeAsync_NoPrivilegeForSlaveStatus_DecidesByReadOnly()
    {
        await using var server = new MySqlServerMock
        {
            Answer = _ => [.. MySqlServerMock.ResultSet(VariableColumns, [["0", "0", "0-1-33", ""]], moreResults: true),
                MySqlServerMock.Error(1227, "42000", "Access denied; you need (at least one of) the SLAVE MONITOR privilege(s)")],
        };
        await using var probe = NewProbe();
        var result = await probe.ProbeAsync(new HostPort("127.0.0.1", server.Port), CancellationToken.None);
        Assert.True(result.Succeeded, result.Error);
        Assert.False(result.InRecovery);
        Assert.Equal(new Lsn(33), result.Lsn);
    }

    [Fact]
    public async Task ProbeAsync_LoginRefused_FailsWithoutThePassword_ThenReconnects()
    {
        await using var server = new MySqlServerMock { LoginError = MySqlServerMock.Error(1045, "28000", "Access denied for user 'mon'@'localhost'") };
        await using var probe = NewProbe();
        var endpoint = new HostPort("127.0.0.1", server.Port);
        var refused = await probe.ProbeAsync(endpoint, CancellationToken.None);
        Assert.False(refused.Succeeded);
        Assert.Contains("Access denied", refused.Error);
        Assert.Contains("1045", refused.Error);
        Assert.DoesNotContain("hunter2", refused.Error);

        server.LoginError = null;
        server.Answer = _ => [.. MySqlServerMock.ResultSet(VariableColumns, [["0", "0", "0-1-1", ""]], moreResults: true), .. MySqlServerMock.ResultSet(SlaveColumns, [])];
        var healthy = await probe.ProbeAsync(endpoint, CancellationToken.None);
        Assert.True(healthy.Succeeded, healthy.Error);
        Assert.False(healthy.InRecovery);
        Assert.Equal(2, server.ConnectionCount);
    }

    [Fact]
    public async Task ProbeAsync_ServerClosesMidAnswer_Fails()
    {
        await using var server = new MySqlServerMock { Answer = _ => null };
        await using var probe = NewProbe();
        var result = await probe.ProbeAsync(new HostPort("127.0.0.1", server.Port), CancellationToken.None);
        Assert.False(result.Succeeded);
        Assert.False(string.IsNullOrEmpty(result.Error));
    }

    private static MySqlBackendProbe NewProbe() =>
        new(new MonitorCredentials("mon", "hunter2", ""), new SocketNetworkConnector(), TimeProvider.System, NullLogger.Instance);

    private static MySqlTextResult Variables(string readOnly, string domain, string binlog, string slave) =>
        MySqlTextResult.Parse(MySqlServerMock.ResultSet(VariableColumns, [[readOnly, domain, binlog, slave]]));

    private static MySqlTextResult Status(params string?[][] rows) => MySqlTextResult.Parse(MySqlServerMock.ResultSet(SlaveColumns, rows));
}
