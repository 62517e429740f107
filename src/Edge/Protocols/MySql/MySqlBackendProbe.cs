using System.Globalization;
using System.IO.Pipelines;
using Microsoft.Extensions.Logging;
using MProxy.Edge.Backends;
using MProxy.Edge.Networking;

namespace MProxy.Edge.Protocols.MySql;

/// <summary>
/// Health checks of MariaDB hosts: one dedicated monitoring connection per host, logged in with the
/// monitor's credentials (<see cref="MySqlServerLogin"/>), running <see cref="Query"/> per probe. A
/// connection that fails, times out or breaks the protocol is closed; the next probe reconnects.
/// </summary>
/// <remarks>
/// <para><b>Role.</b> A host is a replica (<see cref="BackendProbeResult.InRecovery"/>) when
/// <c>SHOW SLAVE STATUS</c> returns a row (it is configured to replicate, running or stopped) or
/// <c>@@read_only</c> is on; otherwise it is a primary. A promotion is therefore
/// <c>STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only = 0</c>. MariaDB has no timeline: the
/// result's <see cref="BackendProbeResult.Timeline"/> is 0, so while two hosts both claim primary
/// the monitor keeps the current one (demote or stop the old primary when promoting another).</para>
/// <para><b>Position.</b> <see cref="Lsn"/> carries a MariaDB GTID sequence number
/// (<see cref="GtidSequence"/>): the <c>seq_no</c> of the host's replication domain
/// (<c>@@gtid_domain_id</c>) in <c>@@gtid_binlog_pos</c> (what it wrote to its binary log) or
/// <c>@@gtid_slave_pos</c> (what it applied as a replica), whichever is higher. In one domain with one
/// primary at a time, sequence numbers only grow along the replication stream and a promoted replica
/// continues from the last one it applied, so the number is monotone across hosts and failovers and a
/// replica has everything up to N exactly when its number is ≥ N. The "bytes" of the core's lag
/// (<c>maxReplicaLagBytes</c>) are then transactions. On a replica <see cref="BackendProbeResult.ReceiveLsn"/>
/// is the domain's number in <c>Gtid_IO_Pos</c> and <see cref="BackendProbeResult.ReplayAge"/> is
/// <c>Seconds_Behind_Master</c>. Several write domains (multi-source) and MySQL's (Oracle) UUID GTIDs
/// are not supported: their positions read as 0 (no lag bound by position, no read-your-writes).</para>
/// <para><b>Privileges.</b> The variables need none. <c>SHOW SLAVE STATUS</c> needs
/// <c>REPLICATION CLIENT</c> (<c>SLAVE MONITOR</c> on MariaDB ≥ 10.5.9); without it the role comes from
/// <c>@@read_only</c> alone and there is no replay age.</para>
/// <para>Thread-safe: probes of different hosts run concurrently, probes of one host one at a time.</para>
/// </remarks>
internal sealed class MySqlBackendProbe(MonitorCredentials credentials, INetworkConnector connector, TimeProvider time, ILogger log)
    : MonitorConnectionProbe(credentials, connector, time, log)
{
    /// <summary>Variables first (they cannot fail), then the replication status, in one round trip.</summary>
    public const string Query =
        "SELECT @@global.read_only, @@global.gtid_domain_id, @@global.gtid_binlog_pos, @@global.gtid_slave_pos; SHOW SLAVE STATUS";

    /// <summary>ER_SPECIFIC_ACCESS_DENIED_ERROR: the monitor may not run SHOW SLAVE STATUS.</summary>
    private const ushort SpecificAccessDenied = 1227;

    /// <summary>utf8mb4_general_ci.</summary>
    private const byte Collation = 45;

    protected override Task LoginAsync(IDuplexPipe transport, CancellationToken cancellationToken)
    {
        var capabilities = MySqlServerLogin.Wanted;
        if (Credentials.Database.Length == 0)
            capabilities &= ~MySqlCapabilities.ConnectWithDb;
        var request = new MySqlLoginRequest(Credentials.User, Credentials.Password, Credentials.Database, Collation, capabilities);
        return MySqlServerLogin.LoginAsync(transport.Input, transport.Output, request, cancellationToken);
    }

    protected override void WriteGoodbye(PipeWriter output) => MySqlPacketWriter.WriteCommand(output, MySqlCommandCode.Quit);

    protected override string DescribeFailure(Exception e) =>
        e is MySqlServerLoginException login ? $"{login.Message} ({login.Code}/{login.SqlState})" : e.Message;

    protected override async Task<BackendProbeResult> QueryAsync(IDuplexPipe transport, CancellationToken cancellationToken)
    {
        MySqlPacketWriter.WriteQuery(transport.Output, Query);
        await transport.Output.FlushAsync(cancellationToken).ConfigureAwait(false);
        var variables = await MySqlTextResult.ReadAsync(transport.Input, cancellationToken).ConfigureAwait(false);
        if (!variables.MoreResults)
            throw new IOException("the health check's second statement did not run");
        MySqlTextResult? status;
        try
        {
            status = await MySqlTextResult.ReadAsync(transport.Input, cancellationToken).ConfigureAwait(false);
        }
        catch (MySqlServerLoginException e) when (e.Code == SpecificAccessDenied)
        {
            status = null; // no privilege for SHOW SLAVE STATUS: read_only decides alone
        }
        if (status is { MoreResults: true })
            throw new IOException("the health check returned more results than it asked for");
        return Interpret(variables, status);
    }

    /// <summary>The probe result from the variables row and the <c>SHOW SLAVE STATUS</c> result (null: not permitted).</summary>
    internal static BackendProbeResult Interpret(MySqlTextResult variables, MySqlTextResult? slaveStatus)
    {
        if (variables.Rows.Count != 1 || variables.Columns.Count != 4)
            throw new IOException($"the health check returned {variables.Rows.Count} rows of {variables.Columns.Count} columns instead of one of 4");
        var row = variables.Rows[0];
        var readOnly = row[0] is { } r && r != "0" && !r.Equals("OFF", StringComparison.OrdinalIgnoreCase);
        if (!uint.TryParse(row[1], NumberStyles.None, CultureInfo.InvariantCulture, out var domain))
            throw new IOException("the health check returned a malformed @@gtid_domain_id");
        var position = new Lsn(Math.Max(GtidSequence(row[2], domain), GtidSequence(row[3], domain)));
        var replicating = slaveStatus is { Rows.Count: > 0 };
        if (!replicating && !readOnly)
            return BackendProbeResult.Primary(position);

        Lsn received = default;
        TimeSpan? replayAge = null;
        if (replicating)
        {
            var slave = slaveStatus!.Rows[0];
            if (slaveStatus.IndexOf("Gtid_IO_Pos") is >= 0 and var io)
                received = new Lsn(GtidSequence(slave[io], domain));
            if (slaveStatus.IndexOf("Seconds_Behind_Master") is >= 0 and var behind
                && long.TryParse(slave[behind], NumberStyles.None, CultureInfo.InvariantCulture, out var seconds))
            {
                replayAge = TimeSpan.FromSeconds(seconds);
            }
        }
        return BackendProbeResult.Replica(position, received, replayAge);
    }

    /// <summary>
    /// The sequence number of <paramref name="domain"/> in a MariaDB GTID list
    /// (<c>domain-server-seq</c>, comma-separated, e.g. <c>0-1-42,1-3-7</c>); 0 when the domain is
    /// absent, the list is empty or null, or an entry is malformed (MySQL's UUID:interval format).
    /// </summary>
    internal static ulong GtidSequence(string? gtids, uint domain)
    {
        if (string.IsNullOrWhiteSpace(gtids))
            return 0;
        ulong best = 0;
        foreach (var part in gtids.AsSpan().Split(','))
        {
            var entry = gtids.AsSpan()[part].Trim();
            var first = entry.IndexOf('-');
            var last = entry.LastIndexOf('-');
            if (first <= 0 || last <= first)
                continue;
            if (!uint.TryParse(entry[..first], NumberStyles.None, CultureInfo.InvariantCulture, out var d) || d != domain)
                continue;
            if (!uint.TryParse(entry[(first + 1)..last], NumberStyles.None, CultureInfo.InvariantCulture, out _))
                continue;
            if (ulong.TryParse(entry[(last + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out var seq))
                best = Math.Max(best, seq);
        }
        return best;
    }
}
