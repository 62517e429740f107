using System.Buffers;
using System.Buffers.Binary;
using MProxy.Edge.Protocols.Postgres;

namespace MProxy.Edge.Tests.Protocols.Postgres;

public sealed class PgFrameTests
{
    private static byte[] Message(char code, int payloadLength)
    {
        var bytes = new byte[5 + payloadLength];
        bytes[0] = (byte)code;
        BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(1), payloadLength + 4);
        for (var i = 0; i < payloadLength; i++)
            bytes[5 + i] = (byte)i;
        return bytes;
    }

    /// <summary>A sequence split into one-byte segments: the worst case for framing.</summary>
    private static ReadOnlySequence<byte> Fragmented(byte[] bytes)
    {
        var first = new Segment(bytes.AsMemory(0, 1), 0);
        var last = first;
        for (var i = 1; i < bytes.Length; i++)
            last = last.Append(bytes.AsMemory(i, 1));
        return new ReadOnlySequence<byte>(first, 0, last, 1);
    }

    [Fact]
    public void TryReadMessage_WholeMessage_ReturnsCodeAndPayload()
    {
        var buffer = new ReadOnlySequence<byte>(Message('Q', 10));
        Assert.True(PgFrame.TryReadMessage(buffer, 1024, out var code, out var payload, out var end));
        Assert.Equal((byte)'Q', code);
        Assert.Equal(10, payload.Length);
        Assert.Equal(buffer.End, end);
    }

    [Fact]
    public void TryReadMessage_FragmentedIntoSingleBytes_StillFrames()
    {
        var bytes = Message('D', 7).Concat(Message('Z', 1)).ToArray();
        var buffer = Fragmented(bytes);
        Assert.True(PgFrame.TryReadMessage(buffer, 1024, out var code, out var payload, out var end));
        Assert.Equal((byte)'D', code);
        Assert.Equal(new byte[] { 0, 1, 2, 3, 4, 5, 6 }, payload.ToArray());
        Assert.True(PgFrame.TryReadMessage(buffer.Slice(end), 1024, out code, out _, out _));
        Assert.Equal((byte)'Z', code);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(4)]
    [InlineData(9)]
    public void TryReadMessage_Incomplete_ReturnsFalse(int available)
    {
        var bytes = Message('Q', 5);
        Assert.False(PgFrame.TryReadMessage(new ReadOnlySequence<byte>(bytes, 0, available), 1024, out _, out _, out _));
    }

    [Fact]
    public void TryReadHeader_LengthBelowFour_ThrowsProtocolError()
    {
        byte[] bytes = [(byte)'Q', 0, 0, 0, 3];
        Assert.Throws<PgProtocolException>(() => PgFrame.TryReadHeader(new ReadOnlySequence<byte>(bytes), 1024, out _, out _));
    }

    [Fact]
    public void TryReadHeader_AboveLimit_ThrowsNamingTheLimit()
    {
        var bytes = Message('Q', 2000);
        var error = Assert.Throws<PgProtocolException>(() => PgFrame.TryReadHeader(new ReadOnlySequence<byte>(bytes), 1024, out _, out _));
        Assert.Contains("1024", error.Message);
    }

    [Fact]
    public void TryReadStartup_ValidAndInvalidLengths()
    {
        var startup = new byte[8];
        BinaryPrimitives.WriteInt32BigEndian(startup, 8);
        BinaryPrimitives.WriteInt32BigEndian(startup.AsSpan(4), PgStartupCodes.SslRequest);
        Assert.True(PgFrame.TryReadStartup(new ReadOnlySequence<byte>(startup), 10_000, out var payload, out _));
        Assert.Equal(4, payload.Length);

        BinaryPrimitives.WriteInt32BigEndian(startup, 20_000);
        Assert.Throws<PgProtocolException>(() => PgFrame.TryReadStartup(new ReadOnlySequence<byte>(startup), 10_000, out _, out _));
    }

    [Fact]
    public void WriteError_ParsesBackWithAllFields()
    {
        var writer = new ArrayBufferWriter<byte>();
        PgMessageWriter.WriteError(writer, "ERROR", "53300", "mproxy: full", "detail text", "hint text");
        Assert.True(PgFrame.TryReadMessage(new ReadOnlySequence<byte>(writer.WrittenMemory), 1024, out var code, out var payload, out var end));
        Assert.Equal((byte)'E', code);
        Assert.Equal(writer.WrittenCount, (int)new ReadOnlySequence<byte>(writer.WrittenMemory).Slice(0, end).Length);
        var fields = PgErrorFields.Parse(payload);
        Assert.Equal("53300", fields.SqlState);
        Assert.Equal("mproxy: full", fields.Message);
        Assert.Equal("ERROR", fields.Severity);
        Assert.False(fields.IsFatal);
    }

    [Fact]
    public void WriteRowDescriptionAndDataRow_HaveConsistentLengths()
    {
        var writer = new ArrayBufferWriter<byte>();
        PgMessageWriter.WriteRowDescription(writer, ["name", "größe"]);
        PgMessageWriter.WriteDataRow(writer, ["é", null]);
        PgMessageWriter.WriteCommandComplete(writer, "SHOW");
        var buffer = new ReadOnlySequence<byte>(writer.WrittenMemory);
        var codes = new List<char>();
        while (PgFrame.TryReadMessage(buffer, 1024, out var code, out _, out var end))
        {
            codes.Add((char)code);
            buffer = buffer.Slice(end);
        }
        Assert.Equal(['T', 'D', 'C'], codes);
        Assert.Equal(0, buffer.Length);
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
}
