using System.Buffers;
using System.Buffers.Binary;
using System.Text;

namespace MProxy.Edge.Protocols.Postgres;

/// <summary>
/// Reads fields from one whole message payload copied into a span. Used for the few messages a
/// decision needs (startup, authentication, errors, ParameterStatus), never for rows.
/// </summary>
internal ref struct PgMessageReader(ReadOnlySpan<byte> payload)
{
    private readonly ReadOnlySpan<byte> _payload = payload;
    private int _offset;

    public readonly int Remaining => _payload.Length - _offset;

    public readonly ReadOnlySpan<byte> Rest => _payload[_offset..];

    public byte ReadByte()
    {
        if (_offset >= _payload.Length)
            PgProtocolException.Throw("message ended early");
        return _payload[_offset++];
    }

    public short ReadInt16()
    {
        if (Remaining < 2)
            PgProtocolException.Throw("message ended early");
        var value = BinaryPrimitives.ReadInt16BigEndian(_payload[_offset..]);
        _offset += 2;
        return value;
    }

    public int ReadInt32()
    {
        if (Remaining < 4)
            PgProtocolException.Throw("message ended early");
        var value = BinaryPrimitives.ReadInt32BigEndian(_payload[_offset..]);
        _offset += 4;
        return value;
    }

    public ReadOnlySpan<byte> ReadBytes(int count)
    {
        if (count < 0 || Remaining < count)
            PgProtocolException.Throw("message ended early");
        var value = _payload.Slice(_offset, count);
        _offset += count;
        return value;
    }

    public ReadOnlySpan<byte> ReadCStringBytes()
    {
        var end = _payload[_offset..].IndexOf((byte)0);
        if (end < 0)
            PgProtocolException.Throw("string is not NUL-terminated");
        var value = _payload.Slice(_offset, end);
        _offset += end + 1;
        return value;
    }

    public string ReadCString() => Encoding.UTF8.GetString(ReadCStringBytes());

    /// <summary>Copies a payload out of a pipe buffer (rented when large; return it with <see cref="ReturnPayload"/>).</summary>
    public static byte[] RentPayload(in ReadOnlySequence<byte> payload, out int length)
    {
        length = (int)payload.Length;
        var array = ArrayPool<byte>.Shared.Rent(Math.Max(length, 1));
        payload.CopyTo(array);
        return array;
    }

    public static void ReturnPayload(byte[] array) => ArrayPool<byte>.Shared.Return(array);
}

/// <summary>The fields of an ErrorResponse or NoticeResponse that mproxy looks at.</summary>
internal readonly record struct PgErrorFields(string Severity, string SqlState, string Message)
{
    public static PgErrorFields Parse(ReadOnlySpan<byte> payload)
    {
        var reader = new PgMessageReader(payload);
        string severity = "ERROR", sqlState = "", message = "";
        while (reader.Remaining > 0)
        {
            var type = reader.ReadByte();
            if (type == 0)
                break;
            var value = reader.ReadCString();
            switch (type)
            {
                case (byte)'V': severity = value; break;
                case (byte)'S' when severity == "ERROR": severity = value; break;
                case (byte)'C': sqlState = value; break;
                case (byte)'M': message = value; break;
            }
        }
        return new PgErrorFields(severity, sqlState, message);
    }

    public static PgErrorFields Parse(in ReadOnlySequence<byte> payload)
    {
        var array = PgMessageReader.RentPayload(payload, out var length);
        try
        {
            return Parse(array.AsSpan(0, length));
        }
        finally
        {
            PgMessageReader.ReturnPayload(array);
        }
    }

    public bool IsFatal => Severity is "FATAL" or "PANIC";
}
