using System.Buffers.Binary;
using System.Text;
using MProxy.Edge.Backends;
using MProxy.Edge.Protocols.Postgres;

namespace MProxy.Edge.Tests.Backends;

public sealed class PgBackendProbeRowTests
{
    private static byte[] Row(params string?[] values)
    {
        var buffer = new List<byte>();
        var count = new byte[2];
        BinaryPrimitives.WriteInt16BigEndian(count, (short)values.Length);
        buffer.AddRange(count);
        foreach (var value in values)
        {
            var length = new byte[4];
            BinaryPrimitives.WriteInt32BigEndian(length, value is null ? -1 : Encoding.UTF8.GetByteCount(value));
            buffer.AddRange(length);
            if (value is not null)
                buffer.AddRange(Encoding.UTF8.GetBytes(value));
        }
        return [.. buffer];
    }

    [Fact]
    public void ParseRow_Primary_LsnAndTimeline()
    {
        var result = PgBackendProbe.ParseRow(Row("f", "0/3000148", null, "0000000A", null));
        Assert.Equal(BackendProbeResult.Primary(Lsn.Parse("0/3000148"), 10), result);
    }

    [Fact]
    public void ParseRow_Replica_ReplayReceiveAndAge()
    {
        var result = PgBackendProbe.ParseRow(Row("t", "0/3000060", "0/3000148", null, "1.500000"));
        Assert.True(result.InRecovery);
        Assert.Equal((Lsn.Parse("0/3000060"), Lsn.Parse("0/3000148"), TimeSpan.FromSeconds(1.5)), (result.Lsn, result.ReceiveLsn, result.ReplayAge));
    }

    [Fact]
    public void ParseRow_ReplicaNothingReplayedYet_NullsAreNone()
    {
        var result = PgBackendProbe.ParseRow(Row("t", null, null, null, null));
        Assert.Equal(BackendProbeResult.Replica(Lsn.None), result);
    }

    [Fact]
    public void ParseRow_MalformedLsn_Throws() =>
        Assert.Throws<IOException>(() => PgBackendProbe.ParseRow(Row("f", "zz", null, null, null)));

    [Fact]
    public void ParseRow_WrongColumnCount_Throws() =>
        Assert.Throws<IOException>(() => PgBackendProbe.ParseRow(Row("f", "0/0")));
}
