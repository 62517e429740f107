using System.Buffers.Binary;
using System.Globalization;
using System.IO.Pipelines;
using Microsoft.Extensions.Logging;
using MProxy.Edge.Backends;
using MProxy.Edge.Networking;

namespace MProxy.Edge.Protocols.Postgres;

/// <summary>
/// Health checks of PostgreSQL hosts: one dedicated monitoring connection per host, logged in with the
/// monitor's credentials (<see cref="PgServerLogin"/>), running <see cref="Query"/> per probe. A
/// connection that fails, times out or breaks the protocol is closed; the next probe reconnects.
/// </summary>
/// <remarks>
/// Thread-safe: probes of different hosts run concurrently, probes of one host one at a time. The
/// query needs no privilege beyond LOGIN: every function it calls is executable by PUBLIC.
/// </remarks>
internal sealed class PgBackendProbe(MonitorCredentials credentials, INetworkConnector connector, TimeProvider time, ILogger log)
    : MonitorConnectionProbe(credentials, connector, time, log)
{
    /// <summary>
    /// Role and positions in one round trip. <c>pg_is_in_recovery()</c> is evaluated once (a
    /// materialized CTE) so the columns agree even during a promotion. The timeline is the first 8
    /// hex digits of the current WAL file name, which only a primary can compute.
    /// </summary>
    public const string Query =
        "WITH s AS MATERIALIZED (SELECT pg_is_in_recovery() AS r) SELECT r, " +
        "CASE WHEN r THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END, " +
        "CASE WHEN r THEN pg_last_wal_receive_lsn() END, " +
        "CASE WHEN r THEN NULL ELSE substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8) END, " +
        "CASE WHEN r THEN extract(epoch FROM now() - pg_last_xact_replay_timestamp()) END " +
        "FROM s";

    private const int MaxMessageBytes = 64 * 1024;

    protected override Task LoginAsync(IDuplexPipe transport, CancellationToken cancellationToken) =>
        PgServerLogin.LoginAsync(transport.Input, transport.Output, Credentials.User, Credentials.Database, Credentials.Password, MaxMessageBytes,
            cancellationToken, PgServerLogin.HealthCheckApplicationName);

    protected override void WriteGoodbye(PipeWriter output) => PgMessageWriter.WriteTerminate(output);

    protected override string DescribeFailure(Exception e) =>
        e is PgServerLoginException login ? $"{login.Message} ({login.SqlState})" : e.Message;

    protected override async Task<BackendProbeResult> QueryAsync(IDuplexPipe transport, CancellationToken cancellationToken)
    {
        PgMessageWriter.WriteQuery(transport.Output, Query);
        await transport.Output.FlushAsync(cancellationToken).ConfigureAwait(false);

        BackendProbeResult? row = null;
        string? error = null;
        while (true)
        {
            var (code, payload) = await ReadMessageAsync(transport.Input, cancellationToken).ConfigureAwait(false);
            switch ((PgBackendCode)code)
            {
                case PgBackendCode.DataRow:
                    row = ParseRow(payload);
                    break;
                case PgBackendCode.ErrorResponse:
                    {
                        var fields = PgErrorFields.Parse(payload);
                        error = $"{fields.Message} ({fields.SqlState})";
                        if (fields.IsFatal)
                            throw new IOException(error);
                        break;
                    }
                case PgBackendCode.ReadyForQuery:
                    if (error is not null)
                        return BackendProbeResult.Failed(error);
                    return row ?? BackendProbeResult.Failed("the health check returned no row");
                case PgBackendCode.RowDescription:
                case PgBackendCode.CommandComplete:
                case PgBackendCode.NoticeResponse:
                case PgBackendCode.ParameterStatus:
                case PgBackendCode.NotificationResponse:
                    break;
                default:
                    throw new IOException($"unexpected message '{(char)code}' in answer to the health check");
            }
        }
    }

    /// <summary>Reads the five columns of <see cref="Query"/> from a text-format DataRow.</summary>
    internal static BackendProbeResult ParseRow(ReadOnlySpan<byte> payload)
    {
        var count = BinaryPrimitives.ReadInt16BigEndian(payload);
        if (count != 5)
            throw new IOException($"the health check returned {count} columns instead of 5");
        var offset = 2;
        Span<Range> columns = stackalloc Range[5];
        Span<bool> nulls = stackalloc bool[5];
        for (var i = 0; i < 5; i++)
        {
            var length = BinaryPrimitives.ReadInt32BigEndian(payload[offset..]);
            offset += 4;
            nulls[i] = length < 0;
            columns[i] = nulls[i] ? new Range(offset, offset) : new Range(offset, offset + length);
            offset += Math.Max(0, length);
        }
        if (nulls[0])
            throw new IOException("pg_is_in_recovery() returned null");
        var inRecovery = payload[columns[0]].SequenceEqual("t"u8);
        var lsn = ParseLsn(payload[columns[1]], nulls[1]);
        if (!inRecovery)
        {
            var timeline = !nulls[3] && uint.TryParse(payload[columns[3]], NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var tli) ? tli : 0;
            return BackendProbeResult.Primary(lsn, timeline);
        }
        TimeSpan? replayAge = !nulls[4] && double.TryParse(payload[columns[4]], NumberStyles.Float, CultureInfo.InvariantCulture, out var seconds)
            ? TimeSpan.FromSeconds(Math.Max(0, seconds))
            : null;
        return BackendProbeResult.Replica(lsn, ParseLsn(payload[columns[2]], nulls[2]), replayAge);
    }

    private static Lsn ParseLsn(ReadOnlySpan<byte> text, bool isNull)
    {
        if (isNull)
            return Lsn.None;
        return Lsn.TryParse(text, out var lsn) ? lsn : throw new IOException("the health check returned a malformed LSN");
    }

    private static async ValueTask<(byte Code, byte[] Payload)> ReadMessageAsync(PipeReader input, CancellationToken cancellationToken)
    {
        while (true)
        {
            var result = await input.ReadAsync(cancellationToken).ConfigureAwait(false);
            var buffer = result.Buffer;
            if (PgFrame.TryReadMessage(buffer, MaxMessageBytes, out var code, out var payload, out var end))
            {
                var array = System.Buffers.BuffersExtensions.ToArray(payload);
                input.AdvanceTo(end);
                return (code, array);
            }
            input.AdvanceTo(buffer.Start, buffer.End);
            if (result.IsCompleted || result.IsCanceled)
                throw new IOException("the server closed the monitoring connection");
        }
    }
}
