using System.Buffers;
using MProxy.Edge.Protocols.MySql;

namespace MProxy.Edge.Tests.Protocols.MySql;

public sealed class MySqlFrameTests
{
    private static byte[] Packet(int length, byte sequence, byte fill = 0x61)
    {
        var packet = new byte[4 + length];
        MySqlFrame.WriteHeader(packet, length, sequence);
        packet.AsSpan(4).Fill(fill);
        return packet;
    }

    /// <summary>A sequence of several segments, so that headers straddle segment boundaries.</summary>
    private static ReadOnlySequence<byte> Segmented(byte[] bytes, int segmentLength)
    {
        Segment? first = null, last = null;
        for (var offset = 0; offset < bytes.Length; offset += segmentLength)
        {
            var chunk = bytes.AsMemory(offset, Math.Min(segmentLength, bytes.Length - offset));
            last = last is null ? first = new Segment(chunk, 0) : last.Append(chunk);
        }
        return new ReadOnlySequence<byte>(first!, 0, last!, last!.Memory.Length);
    }

    private sealed class Segment : ReadOnlySequenceSegment<byte>
    {
        public Segment(ReadOnlyMemory<byte> memory, long runningIndex)
        {
            Memory = memory;
            RunningIndex = runningIndex;
        }

        public Segment Append(ReadOnlyMemory<byte> memory)
        {
            var next = new Segment(memory, RunningIndex + Memory.Length);
            Next = next;
            return next;
        }
    }

    [Fact]
    public void TryReadHeader_HeaderAcrossSegments_ReadsLengthAndSequence()
    {
        var bytes = Packet(300, 7);
        Assert.True(MySqlFrame.TryReadHeader(Segmented(bytes, 3), out var length, out var sequence));
        Assert.Equal(300, length);
        Assert.Equal(7, sequence);
    }

    [Fact]
    public void TryReadHeader_FewerThanFourBytes_ReturnsFalse() =>
        Assert.False(MySqlFrame.TryReadHeader(new ReadOnlySequence<byte>([1, 0, 0]), out _, out _));

    [Fact]
    public void TryReadMessage_PartialPayload_ReturnsFalse()
    {
        var bytes = Packet(10, 0);
        Assert.False(MySqlFrame.TryReadMessage(new ReadOnlySequence<byte>(bytes, 0, 9), 1000, out _, out _, out _, out _));
    }

    [Fact]
    public void TryReadMessage_SplitMessage_SpansAllPacketsUpToTheShortOne()
    {
        byte[] bytes = [.. Packet(MySqlFrame.MaxPacketPayload, 0, 0x01), .. Packet(5, 1, 0x02), .. Packet(3, 0, 0x03)];
        Assert.True(MySqlFrame.TryReadMessage(Segmented(bytes, 1 << 20), long.MaxValue, out var message, out var payloadLength, out var sequence, out var split));
        Assert.True(split);
        Assert.Equal(0, sequence);
        Assert.Equal(MySqlFrame.MaxPacketPayload + 5L, payloadLength);
        Assert.Equal(2 * 4 + MySqlFrame.MaxPacketPayload + 5L, message.Length);
        var payload = MySqlFrame.Payload(message, split);
        Assert.Equal(payloadLength, payload.Length);
        Assert.Equal(0x01, payload.Slice(MySqlFrame.MaxPacketPayload - 1, 1).FirstSpan[0]);
        Assert.Equal(0x02, payload.Slice(MySqlFrame.MaxPacketPayload, 1).FirstSpan[0]);
    }

    [Fact]
    public void TryReadMessage_SplitMessageMissingItsLastPacket_ReturnsFalse()
    {
        var bytes = Packet(MySqlFrame.MaxPacketPayload, 0);
        Assert.False(MySqlFrame.TryReadMessage(new ReadOnlySequence<byte>(bytes), long.MaxValue, out _, out _, out _, out _));
    }

    [Fact]
    public void TryReadMessage_OverTheLimit_ThrowsTooLarge_BeforeThePayloadArrives()
    {
        var header = new byte[4];
        MySqlFrame.WriteHeader(header, 2000, 0);
        var e = Assert.Throws<MySqlProtocolException>(() => MySqlFrame.TryReadMessage(new ReadOnlySequence<byte>(header), 1000, out _, out _, out _, out _));
        Assert.True(e.TooLarge);
    }

    [Theory]
    [InlineData(0, 1)]
    [InlineData(10, 1)]
    [InlineData(MySqlFrame.MaxPacketPayload - 1, 1)]
    [InlineData(MySqlFrame.MaxPacketPayload, 2)]
    [InlineData(MySqlFrame.MaxPacketPayload + 1, 2)]
    [InlineData(2 * MySqlFrame.MaxPacketPayload, 3)]
    public void WriteMessage_SplitsAt16MiB_WithAnEmptyPacketAfterAnExactMultiple(int length, int packets)
    {
        var payload = new byte[length];
        new Random(length).NextBytes(payload);
        var writer = new ArrayBufferWriter<byte>();
        var next = MySqlFrame.WriteMessage(writer, 3, payload);
        Assert.Equal((byte)(3 + packets), next);
        Assert.Equal(length + 4L * packets, writer.WrittenCount);

        Assert.True(MySqlFrame.TryReadMessage(new ReadOnlySequence<byte>(writer.WrittenMemory), long.MaxValue, out var message, out var payloadLength, out var sequence, out var split));
        Assert.Equal(3, sequence);
        Assert.Equal(length, payloadLength);
        Assert.Equal(packets > 1, split);
        Assert.True(MySqlFrame.Payload(message, split).ToArray().AsSpan().SequenceEqual(payload));
    }

    [Fact]
    public void WriteMessage_FromASequence_MatchesTheSpanOverload()
    {
        var payload = new byte[MySqlFrame.MaxPacketPayload + 100];
        new Random(1).NextBytes(payload);
        var fromSpan = new ArrayBufferWriter<byte>();
        MySqlFrame.WriteMessage(fromSpan, 0, payload);
        var fromSequence = new ArrayBufferWriter<byte>();
        MySqlFrame.WriteMessage(fromSequence, 0, Segmented(payload, 4096));
        Assert.True(fromSpan.WrittenSpan.SequenceEqual(fromSequence.WrittenSpan));
    }

    [Fact]
    public void WriteError_HasCodeSqlStateAndMessage()
    {
        var writer = new ArrayBufferWriter<byte>();
        MySqlPacketWriter.WriteError(writer, 1, MySqlError.ResourceLimit, "mproxy: no");
        var bytes = writer.WrittenSpan;
        Assert.Equal(1, bytes[3]);
        Assert.Equal(0xFF, bytes[4]);
        Assert.Equal(1226, bytes[5] | bytes[6] << 8);
        Assert.Equal("#42000mproxy: no", System.Text.Encoding.ASCII.GetString(bytes[7..]));
        Assert.Equal(bytes.Length - 4, bytes[0]);
    }

    [Theory]
    [InlineData(0UL)]
    [InlineData(250UL)]
    [InlineData(251UL)]
    [InlineData(65535UL)]
    [InlineData(65536UL)]
    [InlineData(16777215UL)]
    [InlineData(16777216UL)]
    [InlineData(ulong.MaxValue)]
    public void LengthEncodedInteger_RoundTrips(ulong value)
    {
        Span<byte> buffer = stackalloc byte[9];
        var size = MySqlPacketWriter.WriteLengthEncoded(buffer, value);
        Assert.Equal(MySqlPacketWriter.LengthEncodedSize(value), size);
        var reader = new MySqlPayloadReader(buffer[..size]);
        Assert.Equal(value, reader.ReadLengthEncoded());
        Assert.Equal(0, reader.Remaining);
    }
}
