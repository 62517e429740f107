using System.Buffers;
using System.Diagnostics.CodeAnalysis;

namespace MProxy.Edge.Protocols.MySql;

/// <summary>
/// Framing of MySQL packets: a three-byte little-endian payload length and a one-byte sequence id.
/// A payload of exactly 0xFFFFFF bytes means the message continues in the next packet (16 MiB
/// splitting); a message ends with a packet shorter than that (possibly empty).
/// </summary>
internal static class MySqlFrame
{
    public const int HeaderLength = 4;

    /// <summary>The largest payload of one packet; a packet this long is followed by another of the same message.</summary>
    public const int MaxPacketPayload = 0xFFFFFF;

    /// <summary>Reads the header of the next packet, if four bytes are buffered.</summary>
    public static bool TryReadHeader(in ReadOnlySequence<byte> buffer, out int payloadLength, out byte sequenceId)
    {
        if (buffer.Length < HeaderLength)
        {
            payloadLength = 0;
            sequenceId = 0;
            return false;
        }
        var first = buffer.FirstSpan;
        if (first.Length >= HeaderLength)
        {
            payloadLength = first[0] | first[1] << 8 | first[2] << 16;
            sequenceId = first[3];
            return true;
        }
        Span<byte> header = stackalloc byte[HeaderLength];
        buffer.Slice(0, HeaderLength).CopyTo(header);
        payloadLength = header[0] | header[1] << 8 | header[2] << 16;
        sequenceId = header[3];
        return true;
    }

    /// <summary>
    /// Reads one whole message (all its packets) if it is buffered. <paramref name="message"/> spans
    /// the packets with their headers; <paramref name="payloadLength"/> counts the payload bytes
    /// only; <paramref name="split"/> says whether the message has more than one packet.
    /// </summary>
    /// <exception cref="MySqlProtocolException">the message exceeds <paramref name="maxPayload"/> bytes.</exception>
    public static bool TryReadMessage(in ReadOnlySequence<byte> buffer, long maxPayload, out ReadOnlySequence<byte> message, out long payloadLength, out byte sequenceId, out bool split)
    {
        message = default;
        payloadLength = 0;
        split = false;
        sequenceId = 0;
        long offset = 0;
        var first = true;
        while (true)
        {
            if (!TryReadHeader(buffer.Slice(offset), out var length, out var sequence))
                return false;
            if (first)
            {
                sequenceId = sequence;
                first = false;
            }
            payloadLength += length;
            if (payloadLength > maxPayload)
                MySqlProtocolException.ThrowTooLarge($"a message of more than {maxPayload} bytes exceeds the limit (clients.maxMessageBytes)");
            offset += HeaderLength + length;
            if (buffer.Length < offset)
                return false;
            if (length < MaxPacketPayload)
                break;
            split = true;
        }
        message = buffer.Slice(0, offset);
        return true;
    }

    /// <summary>The payload of a message read by <see cref="TryReadMessage"/>: a slice when it has one packet, a copy without the headers otherwise.</summary>
    public static ReadOnlySequence<byte> Payload(in ReadOnlySequence<byte> message, bool split)
    {
        if (!split)
            return message.Slice(HeaderLength);
        var payload = new byte[PayloadLength(message)];
        var written = 0;
        var rest = message;
        while (rest.Length > 0)
        {
            TryReadHeader(rest, out var length, out _);
            rest.Slice(HeaderLength, length).CopyTo(payload.AsSpan(written));
            written += length;
            rest = rest.Slice(HeaderLength + length);
        }
        return new ReadOnlySequence<byte>(payload);
    }

    private static long PayloadLength(in ReadOnlySequence<byte> message)
    {
        long total = 0;
        var rest = message;
        while (rest.Length > 0)
        {
            TryReadHeader(rest, out var length, out _);
            total += length;
            rest = rest.Slice(HeaderLength + length);
        }
        return total;
    }

    /// <summary>Writes a packet header.</summary>
    public static void WriteHeader(Span<byte> destination, int payloadLength, byte sequenceId)
    {
        destination[0] = (byte)payloadLength;
        destination[1] = (byte)(payloadLength >> 8);
        destination[2] = (byte)(payloadLength >> 16);
        destination[3] = sequenceId;
    }

    /// <summary>
    /// Writes <paramref name="payload"/> as one message starting at sequence id
    /// <paramref name="sequenceId"/>, split into packets of at most 0xFFFFFF bytes (with an empty
    /// last packet when the payload is an exact multiple); returns the next sequence id.
    /// </summary>
    public static byte WriteMessage(IBufferWriter<byte> writer, byte sequenceId, in ReadOnlySequence<byte> payload)
    {
        var rest = payload;
        while (true)
        {
            var length = (int)Math.Min(rest.Length, MaxPacketPayload);
            var header = writer.GetSpan(HeaderLength);
            WriteHeader(header, length, sequenceId++);
            writer.Advance(HeaderLength);
            foreach (var segment in rest.Slice(0, length))
                writer.Write(segment.Span);
            rest = rest.Slice(length);
            if (length < MaxPacketPayload)
                return sequenceId;
        }
    }

    /// <summary><see cref="WriteMessage(IBufferWriter{byte}, byte, in ReadOnlySequence{byte})"/> for a span.</summary>
    public static byte WriteMessage(IBufferWriter<byte> writer, byte sequenceId, ReadOnlySpan<byte> payload)
    {
        while (true)
        {
            var length = Math.Min(payload.Length, MaxPacketPayload);
            var span = writer.GetSpan(HeaderLength + Math.Min(length, 64 * 1024));
            WriteHeader(span, length, sequenceId++);
            writer.Advance(HeaderLength);
            writer.Write(payload[..length]);
            payload = payload[length..];
            if (length < MaxPacketPayload)
                return sequenceId;
        }
    }
}

/// <summary>A peer broke the protocol; the session answers with an ERR packet and closes that one connection.</summary>
internal sealed class MySqlProtocolException(string message, bool tooLarge = false) : Exception(message)
{
    /// <summary>The message was over the size limit (ER_NET_PACKET_TOO_LARGE rather than a malformed packet).</summary>
    public bool TooLarge { get; } = tooLarge;

    [DoesNotReturn]
    public static void Throw(string message) => throw new MySqlProtocolException(message);

    [DoesNotReturn]
    public static void ThrowTooLarge(string message) => throw new MySqlProtocolException(message, tooLarge: true);
}

/// <summary>An error that ends a client command with an ERR packet (and, when <see cref="Fatal"/>, the connection). Its message starts with <c>mproxy:</c>.</summary>
internal sealed class MySqlErrorException(MySqlError error, string message, bool fatal = false) : Exception(message)
{
    public MySqlError Error { get; } = error;

    public bool Fatal { get; } = fatal;
}
