using System.Buffers.Binary;
using System.Text;

namespace MProxy.Edge.Protocols.MySql;

/// <summary>Reads the fields of one packet payload: fixed-length little-endian integers, length-encoded integers and strings.</summary>
internal ref struct MySqlPayloadReader(ReadOnlySpan<byte> payload)
{
    private readonly ReadOnlySpan<byte> _payload = payload;
    private int _offset;

    public readonly int Offset => _offset;

    public readonly int Remaining => _payload.Length - _offset;

    public readonly ReadOnlySpan<byte> Rest => _payload[_offset..];

    public byte ReadByte()
    {
        Need(1);
        return _payload[_offset++];
    }

    public ushort ReadUInt16()
    {
        Need(2);
        var value = BinaryPrimitives.ReadUInt16LittleEndian(_payload[_offset..]);
        _offset += 2;
        return value;
    }

    public uint ReadUInt32()
    {
        Need(4);
        var value = BinaryPrimitives.ReadUInt32LittleEndian(_payload[_offset..]);
        _offset += 4;
        return value;
    }

    /// <summary>A length-encoded integer (0xFB, NULL, reads as 0 here; 0xFF is not an integer).</summary>
    public ulong ReadLengthEncoded()
    {
        var first = ReadByte();
        switch (first)
        {
            case < 0xFB:
                return first;
            case 0xFB:
                return 0;
            case 0xFC:
                return ReadUInt16();
            case 0xFD:
                {
                    Need(3);
                    var value = (ulong)(_payload[_offset] | _payload[_offset + 1] << 8 | _payload[_offset + 2] << 16);
                    _offset += 3;
                    return value;
                }
            case 0xFE:
                {
                    Need(8);
                    var value = BinaryPrimitives.ReadUInt64LittleEndian(_payload[_offset..]);
                    _offset += 8;
                    return value;
                }
            default:
                MySqlProtocolException.Throw("invalid length-encoded integer");
                return 0;
        }
    }

    public ReadOnlySpan<byte> ReadBytes(int count)
    {
        Need(count);
        var bytes = _payload.Slice(_offset, count);
        _offset += count;
        return bytes;
    }

    public void Skip(int count)
    {
        Need(count);
        _offset += count;
    }

    /// <summary>Bytes up to a NUL (consumed); all the rest when there is none and <paramref name="toEndIfMissing"/>.</summary>
    public ReadOnlySpan<byte> ReadNullTerminated(bool toEndIfMissing = false)
    {
        var rest = _payload[_offset..];
        var end = rest.IndexOf((byte)0);
        if (end < 0)
        {
            if (!toEndIfMissing)
                MySqlProtocolException.Throw("missing NUL terminator");
            _offset = _payload.Length;
            return rest;
        }
        _offset += end + 1;
        return rest[..end];
    }

    public string ReadNullTerminatedString(bool toEndIfMissing = false) => Encoding.UTF8.GetString(ReadNullTerminated(toEndIfMissing));

    public ReadOnlySpan<byte> ReadLengthEncodedBytes()
    {
        var length = ReadLengthEncoded();
        if (length > (ulong)Remaining)
            MySqlProtocolException.Throw("length-encoded string runs past the packet");
        return ReadBytes((int)length);
    }

    public ReadOnlySpan<byte> ReadRest()
    {
        var rest = _payload[_offset..];
        _offset = _payload.Length;
        return rest;
    }

    private readonly void Need(int count)
    {
        if (count < 0 || _payload.Length - _offset < count)
            MySqlProtocolException.Throw("packet too short");
    }

    /// <summary>The size of the length-encoded integer whose first byte is <paramref name="first"/>.</summary>
    public static int LengthEncodedSize(byte first) => first switch
    {
        < 0xFB => 1,
        0xFC => 3,
        0xFD => 4,
        0xFE => 9,
        _ => 1,
    };
}
