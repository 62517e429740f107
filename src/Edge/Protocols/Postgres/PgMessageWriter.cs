using System.Buffers;
using System.Buffers.Binary;
using System.Text;

namespace MProxy.Edge.Protocols.Postgres;

/// <summary>
/// Writes backend and frontend messages into a buffer writer, computing each message's exact
/// length first so that one <c>GetSpan</c>/<c>Advance</c> pair writes it.
/// </summary>
internal static class PgMessageWriter
{
    private static readonly Encoding Utf8 = Encoding.UTF8;

    public static void WriteReadyForQuery(IBufferWriter<byte> writer, PgTransactionStatus status)
    {
        var span = writer.GetSpan(6);
        span[0] = (byte)PgBackendCode.ReadyForQuery;
        BinaryPrimitives.WriteInt32BigEndian(span[1..], 5);
        span[5] = (byte)status;
        writer.Advance(6);
    }

    public static void WriteError(IBufferWriter<byte> writer, string severity, string sqlState, string message, string? detail = null, string? hint = null)
        => WriteNoticeOrError(writer, PgBackendCode.ErrorResponse, severity, sqlState, message, detail, hint);

    public static void WriteNotice(IBufferWriter<byte> writer, string sqlState, string message)
        => WriteNoticeOrError(writer, PgBackendCode.NoticeResponse, "NOTICE", sqlState, message, null, null);

    private static void WriteNoticeOrError(IBufferWriter<byte> writer, PgBackendCode code, string severity, string sqlState, string message, string? detail, string? hint)
    {
        var length = 4
            + FieldLength(severity) * 2 // 'S' and 'V'
            + FieldLength(sqlState)
            + FieldLength(message)
            + (detail is null ? 0 : FieldLength(detail))
            + (hint is null ? 0 : FieldLength(hint))
            + 1;
        var span = writer.GetSpan(length + 1);
        span[0] = (byte)code;
        BinaryPrimitives.WriteInt32BigEndian(span[1..], length);
        var offset = 5;
        offset += WriteField(span[offset..], (byte)'S', severity);
        offset += WriteField(span[offset..], (byte)'V', severity);
        offset += WriteField(span[offset..], (byte)'C', sqlState);
        offset += WriteField(span[offset..], (byte)'M', message);
        if (detail is not null)
            offset += WriteField(span[offset..], (byte)'D', detail);
        if (hint is not null)
            offset += WriteField(span[offset..], (byte)'H', hint);
        span[offset++] = 0;
        writer.Advance(offset);
    }

    public static void WriteParameterStatus(IBufferWriter<byte> writer, string name, string value)
    {
        var length = 4 + CStringLength(name) + CStringLength(value);
        var span = writer.GetSpan(length + 1);
        span[0] = (byte)PgBackendCode.ParameterStatus;
        BinaryPrimitives.WriteInt32BigEndian(span[1..], length);
        var offset = 5 + WriteCString(span[5..], name);
        offset += WriteCString(span[offset..], value);
        writer.Advance(offset);
    }

    public static void WriteBackendKeyData(IBufferWriter<byte> writer, int processId, int secretKey)
    {
        var span = writer.GetSpan(13);
        span[0] = (byte)PgBackendCode.BackendKeyData;
        BinaryPrimitives.WriteInt32BigEndian(span[1..], 12);
        BinaryPrimitives.WriteInt32BigEndian(span[5..], processId);
        BinaryPrimitives.WriteInt32BigEndian(span[9..], secretKey);
        writer.Advance(13);
    }

    public static void WriteAuthentication(IBufferWriter<byte> writer, PgAuthRequest request, ReadOnlySpan<byte> data = default)
    {
        var length = 8 + data.Length;
        var span = writer.GetSpan(length + 1);
        span[0] = (byte)PgBackendCode.Authentication;
        BinaryPrimitives.WriteInt32BigEndian(span[1..], length);
        BinaryPrimitives.WriteInt32BigEndian(span[5..], (int)request);
        data.CopyTo(span[9..]);
        writer.Advance(length + 1);
    }

    /// <summary>AuthenticationSASL listing one mechanism.</summary>
    public static void WriteAuthenticationSasl(IBufferWriter<byte> writer, string mechanism)
    {
        var length = 8 + CStringLength(mechanism) + 1;
        var span = writer.GetSpan(length + 1);
        span[0] = (byte)PgBackendCode.Authentication;
        BinaryPrimitives.WriteInt32BigEndian(span[1..], length);
        BinaryPrimitives.WriteInt32BigEndian(span[5..], (int)PgAuthRequest.Sasl);
        var offset = 9 + WriteCString(span[9..], mechanism);
        span[offset++] = 0;
        writer.Advance(offset);
    }

    public static void WriteCommandComplete(IBufferWriter<byte> writer, string tag)
        => WriteSingleCString(writer, PgBackendCode.CommandComplete, tag);

    public static void WriteEmptyQueryResponse(IBufferWriter<byte> writer) => WriteEmpty(writer, (byte)PgBackendCode.EmptyQueryResponse);

    /// <summary>RowDescription with text-format columns of type <c>text</c> (OID 25).</summary>
    public static void WriteRowDescription(IBufferWriter<byte> writer, IReadOnlyList<string> columns)
    {
        var length = 4 + 2;
        foreach (var column in columns)
            length += CStringLength(column) + 18;
        var span = writer.GetSpan(length + 1);
        span[0] = (byte)PgBackendCode.RowDescription;
        BinaryPrimitives.WriteInt32BigEndian(span[1..], length);
        BinaryPrimitives.WriteInt16BigEndian(span[5..], (short)columns.Count);
        var offset = 7;
        foreach (var column in columns)
        {
            offset += WriteCString(span[offset..], column);
            BinaryPrimitives.WriteInt32BigEndian(span[offset..], 0); // table oid
            BinaryPrimitives.WriteInt16BigEndian(span[(offset + 4)..], 0); // column attnum
            BinaryPrimitives.WriteInt32BigEndian(span[(offset + 6)..], 25); // type oid: text
            BinaryPrimitives.WriteInt16BigEndian(span[(offset + 10)..], -1); // type size
            BinaryPrimitives.WriteInt32BigEndian(span[(offset + 12)..], -1); // type modifier
            BinaryPrimitives.WriteInt16BigEndian(span[(offset + 16)..], 0); // format: text
            offset += 18;
        }
        writer.Advance(offset);
    }

    /// <summary>DataRow of text values; a null entry is SQL NULL.</summary>
    public static void WriteDataRow(IBufferWriter<byte> writer, IReadOnlyList<string?> values)
    {
        var length = 4 + 2;
        foreach (var value in values)
            length += 4 + (value is null ? 0 : Utf8.GetByteCount(value));
        var span = writer.GetSpan(length + 1);
        span[0] = (byte)PgBackendCode.DataRow;
        BinaryPrimitives.WriteInt32BigEndian(span[1..], length);
        BinaryPrimitives.WriteInt16BigEndian(span[5..], (short)values.Count);
        var offset = 7;
        foreach (var value in values)
        {
            if (value is null)
            {
                BinaryPrimitives.WriteInt32BigEndian(span[offset..], -1);
                offset += 4;
                continue;
            }
            var written = Utf8.GetBytes(value, span[(offset + 4)..]);
            BinaryPrimitives.WriteInt32BigEndian(span[offset..], written);
            offset += 4 + written;
        }
        writer.Advance(offset);
    }

    // ---- frontend messages (edge → server) ----

    public static void WriteStartup(IBufferWriter<byte> writer, IReadOnlyList<KeyValuePair<string, string>> parameters)
    {
        var length = 4 + 4 + 1;
        foreach (var (key, value) in parameters)
            length += CStringLength(key) + CStringLength(value);
        var span = writer.GetSpan(length);
        BinaryPrimitives.WriteInt32BigEndian(span, length);
        BinaryPrimitives.WriteInt32BigEndian(span[4..], PgStartupCodes.ProtocolVersion3);
        var offset = 8;
        foreach (var (key, value) in parameters)
        {
            offset += WriteCString(span[offset..], key);
            offset += WriteCString(span[offset..], value);
        }
        span[offset++] = 0;
        writer.Advance(offset);
    }

    public static void WriteCancelRequest(IBufferWriter<byte> writer, int processId, int secretKey)
    {
        var span = writer.GetSpan(16);
        BinaryPrimitives.WriteInt32BigEndian(span, 16);
        BinaryPrimitives.WriteInt32BigEndian(span[4..], PgStartupCodes.CancelRequest);
        BinaryPrimitives.WriteInt32BigEndian(span[8..], processId);
        BinaryPrimitives.WriteInt32BigEndian(span[12..], secretKey);
        writer.Advance(16);
    }

    public static void WriteQuery(IBufferWriter<byte> writer, string sql)
        => WriteSingleCString(writer, (PgBackendCode)PgFrontendCode.Query, sql);

    /// <summary>PasswordMessage carrying a NUL-terminated string (cleartext or md5).</summary>
    public static void WritePasswordMessage(IBufferWriter<byte> writer, string password)
        => WriteSingleCString(writer, (PgBackendCode)PgFrontendCode.Password, password);

    public static void WriteSaslInitialResponse(IBufferWriter<byte> writer, string mechanism, ReadOnlySpan<byte> data)
    {
        var length = 4 + CStringLength(mechanism) + 4 + data.Length;
        var span = writer.GetSpan(length + 1);
        span[0] = (byte)PgFrontendCode.Password;
        BinaryPrimitives.WriteInt32BigEndian(span[1..], length);
        var offset = 5 + WriteCString(span[5..], mechanism);
        BinaryPrimitives.WriteInt32BigEndian(span[offset..], data.Length);
        data.CopyTo(span[(offset + 4)..]);
        writer.Advance(length + 1);
    }

    public static void WriteSaslResponse(IBufferWriter<byte> writer, ReadOnlySpan<byte> data)
    {
        var span = writer.GetSpan(5 + data.Length);
        span[0] = (byte)PgFrontendCode.Password;
        BinaryPrimitives.WriteInt32BigEndian(span[1..], 4 + data.Length);
        data.CopyTo(span[5..]);
        writer.Advance(5 + data.Length);
    }

    public static void WriteSync(IBufferWriter<byte> writer) => WriteEmpty(writer, (byte)PgFrontendCode.Sync);

    public static void WriteTerminate(IBufferWriter<byte> writer) => WriteEmpty(writer, (byte)PgFrontendCode.Terminate);

    // ---- helpers ----

    private static void WriteEmpty(IBufferWriter<byte> writer, byte code)
    {
        var span = writer.GetSpan(5);
        span[0] = code;
        BinaryPrimitives.WriteInt32BigEndian(span[1..], 4);
        writer.Advance(5);
    }

    private static void WriteSingleCString(IBufferWriter<byte> writer, PgBackendCode code, string value)
    {
        var length = 4 + CStringLength(value);
        var span = writer.GetSpan(length + 1);
        span[0] = (byte)code;
        BinaryPrimitives.WriteInt32BigEndian(span[1..], length);
        var offset = 5 + WriteCString(span[5..], value);
        writer.Advance(offset);
    }

    private static int FieldLength(string value) => 1 + CStringLength(value);

    private static int CStringLength(string value) => Utf8.GetByteCount(value) + 1;

    private static int WriteField(Span<byte> span, byte type, string value)
    {
        span[0] = type;
        return 1 + WriteCString(span[1..], value);
    }

    private static int WriteCString(Span<byte> span, string value)
    {
        var written = Utf8.GetBytes(value, span);
        span[written] = 0;
        return written + 1;
    }
}
