using System.Buffers;
using System.Buffers.Binary;
using System.Text;

namespace MProxy.Edge.Protocols.MySql;

/// <summary>
/// Writes the packets the edge composes itself — OK, ERR, EOF, handshake, commands — computing each
/// payload's exact length first so that one <c>GetSpan</c>/<c>Advance</c> pair writes it.
/// </summary>
internal static class MySqlPacketWriter
{
    private static readonly Encoding Utf8 = Encoding.UTF8;

    /// <summary>Longest message text the edge puts in an ERR packet (MySQL's own limit is 512 bytes).</summary>
    private const int MaxErrorMessageBytes = 1024;

    public static void WriteOk(IBufferWriter<byte> writer, byte sequenceId, MySqlServerStatus status, ulong affectedRows = 0, ulong lastInsertId = 0, ushort warnings = 0)
    {
        var length = 1 + LengthEncodedSize(affectedRows) + LengthEncodedSize(lastInsertId) + 4;
        var span = writer.GetSpan(MySqlFrame.HeaderLength + length);
        MySqlFrame.WriteHeader(span, length, sequenceId);
        var offset = MySqlFrame.HeaderLength;
        span[offset++] = MySqlResponseHeader.Ok;
        offset += WriteLengthEncoded(span[offset..], affectedRows);
        offset += WriteLengthEncoded(span[offset..], lastInsertId);
        BinaryPrimitives.WriteUInt16LittleEndian(span[offset..], (ushort)status);
        BinaryPrimitives.WriteUInt16LittleEndian(span[(offset + 2)..], warnings);
        writer.Advance(MySqlFrame.HeaderLength + length);
    }

    public static void WriteEof(IBufferWriter<byte> writer, byte sequenceId, MySqlServerStatus status, ushort warnings = 0)
    {
        var span = writer.GetSpan(MySqlFrame.HeaderLength + 5);
        MySqlFrame.WriteHeader(span, 5, sequenceId);
        span[4] = MySqlResponseHeader.Eof;
        BinaryPrimitives.WriteUInt16LittleEndian(span[5..], warnings);
        BinaryPrimitives.WriteUInt16LittleEndian(span[7..], (ushort)status);
        writer.Advance(MySqlFrame.HeaderLength + 5);
    }

    /// <summary>An ERR packet: 0xFF, the code, '#' and the SQLSTATE, then the message (truncated to 1 KiB).</summary>
    public static void WriteError(IBufferWriter<byte> writer, byte sequenceId, MySqlError error, string message)
    {
        var messageBytes = Math.Min(Utf8.GetByteCount(message), MaxErrorMessageBytes);
        var length = 1 + 2 + 1 + 5 + messageBytes;
        var span = writer.GetSpan(MySqlFrame.HeaderLength + length + 4);
        MySqlFrame.WriteHeader(span, length, sequenceId);
        span[4] = MySqlResponseHeader.Err;
        BinaryPrimitives.WriteUInt16LittleEndian(span[5..], error.Code);
        span[7] = (byte)'#';
        for (var i = 0; i < 5; i++)
            span[8 + i] = (byte)(i < error.SqlState.Length ? error.SqlState[i] : '0');
        if (messageBytes == Utf8.GetByteCount(message))
        {
            Utf8.GetBytes(message, span[13..]);
        }
        else
        {
            var bytes = Utf8.GetBytes(message);
            bytes.AsSpan(0, messageBytes).CopyTo(span[13..]);
        }
        writer.Advance(MySqlFrame.HeaderLength + length);
    }

    /// <summary>An ERR packet as a byte array (for the edge's responses queued behind a server's).</summary>
    public static byte[] ErrorBytes(byte sequenceId, MySqlError error, string message)
    {
        var buffer = new ArrayBufferWriter<byte>(64 + message.Length);
        WriteError(buffer, sequenceId, error, message);
        return buffer.WrittenSpan.ToArray();
    }

    /// <summary>A command packet (sequence id 0): the command byte and its argument.</summary>
    public static void WriteCommand(IBufferWriter<byte> writer, MySqlCommandCode command, ReadOnlySpan<byte> argument = default)
    {
        var length = 1 + argument.Length;
        if (length >= MySqlFrame.MaxPacketPayload)
        {
            var payload = new byte[length];
            payload[0] = (byte)command;
            argument.CopyTo(payload.AsSpan(1));
            MySqlFrame.WriteMessage(writer, 0, payload);
            return;
        }
        var span = writer.GetSpan(MySqlFrame.HeaderLength + length);
        MySqlFrame.WriteHeader(span, length, 0);
        span[4] = (byte)command;
        argument.CopyTo(span[5..]);
        writer.Advance(MySqlFrame.HeaderLength + length);
    }

    /// <summary>COM_QUERY with <paramref name="sql"/>.</summary>
    public static void WriteQuery(IBufferWriter<byte> writer, string sql) => WriteCommand(writer, MySqlCommandCode.Query, Utf8.GetBytes(sql));

    /// <summary>COM_STMT_CLOSE of a server statement (no response).</summary>
    public static void WriteStatementClose(IBufferWriter<byte> writer, uint statementId)
    {
        Span<byte> id = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(id, statementId);
        WriteCommand(writer, MySqlCommandCode.StmtClose, id);
    }

    /// <summary>A payload written by <paramref name="write"/> into a growing buffer, then framed (login and other rare paths).</summary>
    public static byte WritePayload(IBufferWriter<byte> writer, byte sequenceId, Action<ArrayBufferWriter<byte>> write)
    {
        var payload = new ArrayBufferWriter<byte>(128);
        write(payload);
        return MySqlFrame.WriteMessage(writer, sequenceId, payload.WrittenSpan);
    }

    public static int LengthEncodedSize(ulong value) => value switch
    {
        < 0xFB => 1,
        <= 0xFFFF => 3,
        <= 0xFFFFFF => 4,
        _ => 9,
    };

    public static int WriteLengthEncoded(Span<byte> destination, ulong value)
    {
        switch (value)
        {
            case < 0xFB:
                destination[0] = (byte)value;
                return 1;
            case <= 0xFFFF:
                destination[0] = 0xFC;
                BinaryPrimitives.WriteUInt16LittleEndian(destination[1..], (ushort)value);
                return 3;
            case <= 0xFFFFFF:
                destination[0] = 0xFD;
                destination[1] = (byte)value;
                destination[2] = (byte)(value >> 8);
                destination[3] = (byte)(value >> 16);
                return 4;
            default:
                destination[0] = 0xFE;
                BinaryPrimitives.WriteUInt64LittleEndian(destination[1..], value);
                return 9;
        }
    }

    // Payload builders for ArrayBufferWriter (rare paths).

    public static void Put(this ArrayBufferWriter<byte> writer, byte value)
    {
        writer.GetSpan(1)[0] = value;
        writer.Advance(1);
    }

    public static void PutUInt16(this ArrayBufferWriter<byte> writer, ushort value)
    {
        BinaryPrimitives.WriteUInt16LittleEndian(writer.GetSpan(2), value);
        writer.Advance(2);
    }

    public static void PutUInt32(this ArrayBufferWriter<byte> writer, uint value)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(writer.GetSpan(4), value);
        writer.Advance(4);
    }

    public static void PutZeros(this ArrayBufferWriter<byte> writer, int count)
    {
        writer.GetSpan(count)[..count].Clear();
        writer.Advance(count);
    }

    public static void PutNullTerminated(this ArrayBufferWriter<byte> writer, string value)
    {
        writer.Write(Utf8.GetBytes(value));
        writer.Put(0);
    }

    public static void PutLengthEncoded(this ArrayBufferWriter<byte> writer, ulong value)
    {
        var span = writer.GetSpan(9);
        writer.Advance(WriteLengthEncoded(span, value));
    }

    public static void PutLengthEncodedBytes(this ArrayBufferWriter<byte> writer, ReadOnlySpan<byte> value)
    {
        writer.PutLengthEncoded((ulong)value.Length);
        writer.Write(value);
    }
}
