using System.Buffers;
using System.Buffers.Binary;

namespace MProxy.Edge.Protocols.Postgres;

/// <summary>
/// Framing of PostgreSQL v3 messages: a one-byte tag and a four-byte big-endian length that counts
/// itself but not the tag. Startup-phase messages have no tag.
/// </summary>
internal static class PgFrame
{
    public const int HeaderLength = 5;

    /// <summary>Reads the header of the next tagged message, if five bytes are buffered.</summary>
    /// <returns>false when fewer than five bytes are buffered.</returns>
    /// <exception cref="PgProtocolException">the length field is below 4 or above <paramref name="maxLength"/>.</exception>
    public static bool TryReadHeader(in ReadOnlySequence<byte> buffer, int maxLength, out byte code, out int payloadLength)
    {
        if (buffer.Length < HeaderLength)
        {
            code = 0;
            payloadLength = 0;
            return false;
        }
        Span<byte> header = stackalloc byte[HeaderLength];
        var first = buffer.FirstSpan;
        if (first.Length >= HeaderLength)
            first[..HeaderLength].CopyTo(header);
        else
            buffer.Slice(0, HeaderLength).CopyTo(header);
        code = header[0];
        var length = BinaryPrimitives.ReadInt32BigEndian(header[1..]);
        if (length < 4)
            PgProtocolException.Throw($"message '{(char)code}' has invalid length {length}");
        if (length - 4 > maxLength)
            PgProtocolException.Throw($"message '{(char)code}' of {length - 4} bytes exceeds the limit of {maxLength} bytes");
        payloadLength = length - 4;
        return true;
    }

    /// <summary>Reads a whole tagged message: header and payload, if all of it is buffered.</summary>
    public static bool TryReadMessage(in ReadOnlySequence<byte> buffer, int maxLength, out byte code, out ReadOnlySequence<byte> payload, out SequencePosition end)
    {
        if (!TryReadHeader(buffer, maxLength, out code, out var payloadLength) || buffer.Length < HeaderLength + payloadLength)
        {
            payload = default;
            end = buffer.Start;
            return false;
        }
        payload = buffer.Slice(HeaderLength, payloadLength);
        end = payload.End;
        return true;
    }

    /// <summary>Reads an untagged startup-phase message (length then payload).</summary>
    public static bool TryReadStartup(in ReadOnlySequence<byte> buffer, int maxLength, out ReadOnlySequence<byte> payload, out SequencePosition end)
    {
        payload = default;
        end = buffer.Start;
        if (buffer.Length < 4)
            return false;
        Span<byte> lengthBytes = stackalloc byte[4];
        buffer.Slice(0, 4).CopyTo(lengthBytes);
        var length = BinaryPrimitives.ReadInt32BigEndian(lengthBytes);
        if (length < 8 || length > maxLength)
            PgProtocolException.Throw($"startup packet has invalid length {length}");
        if (buffer.Length < length)
            return false;
        payload = buffer.Slice(4, length - 4);
        end = payload.End;
        return true;
    }
}
