using System.Buffers;
using System.Buffers.Binary;
using System.IO.Pipelines;
using System.Text;
using MProxy.Edge.Admin;

namespace MProxy.Edge.Protocols.Postgres;

/// <summary>
/// The PostgreSQL face of the admin console: a logged-in client of the virtual database
/// <c>mproxy</c> talks to the <see cref="AdminConsole"/> instead of a server. Simple queries and the
/// extended protocol (Parse/Bind/Describe/Execute/Sync, what Npgsql sends) are both answered with
/// ordinary result sets — RowDescription, DataRow, CommandComplete, ReadyForQuery — so psql prints
/// them. Columns are of type <c>text</c>; a Bind asking for binary results gets the same bytes
/// (text's binary form is its UTF-8).
/// </summary>
internal sealed class PgAdminSession(AdminConsole console, PipeReader input, PipeWriter output, AdminCaller caller, int maxMessageBytes, Func<bool> shutdownRequested)
{
    private const int TextOid = 25;

    private readonly Dictionary<string, string> _statements = new(StringComparer.Ordinal);
    private readonly Dictionary<string, Portal> _portals = new(StringComparer.Ordinal);
    private bool _skipUntilSync;

    private sealed class Portal(string text, short[] formats)
    {
        public string Text { get; } = text;

        public short[] Formats { get; } = formats;

        public AdminReply? Reply { get; set; }
    }

    /// <summary>What an admin client is greeted with after authentication.</summary>
    public static void WriteWelcome(PipeWriter output, int processId, int secretKey, string? applicationName)
    {
        PgMessageWriter.WriteAuthentication(output, PgAuthRequest.Ok);
        KeyValuePair<string, string>[] parameters =
        [
            new("server_version", "15.0"),
            new("server_encoding", "UTF8"),
            new("client_encoding", "UTF8"),
            new("DateStyle", "ISO, MDY"),
            new("IntervalStyle", "postgres"),
            new("TimeZone", "UTC"),
            new("integer_datetimes", "on"),
            new("standard_conforming_strings", "on"),
            new("is_superuser", "off"),
            new("application_name", applicationName ?? ""),
        ];
        foreach (var (name, value) in parameters)
            PgMessageWriter.WriteParameterStatus(output, name, value);
        PgMessageWriter.WriteBackendKeyData(output, processId, secretKey);
        PgMessageWriter.WriteReadyForQuery(output, PgTransactionStatus.Idle);
    }

    public async Task RunAsync()
    {
        while (true)
        {
            var result = await input.ReadAsync();
            var buffer = result.Buffer;
            var keepGoing = true;
            try
            {
                if (result.IsCanceled && shutdownRequested())
                {
                    PgMessageWriter.WriteError(output, "FATAL", PgSqlState.AdminShutdown, "mproxy: the proxy is shutting down");
                    keepGoing = false;
                }
                while (keepGoing && PgFrame.TryReadHeader(buffer, maxMessageBytes, out var code, out var length) && buffer.Length >= PgFrame.HeaderLength + length)
                {
                    var payload = buffer.Slice(PgFrame.HeaderLength, length).ToArray();
                    buffer = buffer.Slice(PgFrame.HeaderLength + length);
                    keepGoing = Handle(code, payload);
                }
            }
            finally
            {
                input.AdvanceTo(buffer.Start, buffer.End);
            }
            await output.FlushAsync();
            if (!keepGoing || result.IsCompleted)
                return;
        }
    }

    /// <summary>Handles one message; false when the client terminated.</summary>
    private bool Handle(byte code, byte[] payload)
    {
        if (_skipUntilSync && code is not ((byte)PgFrontendCode.Sync or (byte)PgFrontendCode.Terminate))
            return true;
        var reader = new PgMessageReader(payload);
        switch ((PgFrontendCode)code)
        {
            case PgFrontendCode.Query:
                SimpleQuery(reader.ReadCString());
                return true;
            case PgFrontendCode.Parse:
                Parse(ref reader);
                return true;
            case PgFrontendCode.Bind:
                Bind(ref reader);
                return true;
            case PgFrontendCode.Describe:
                Describe(ref reader);
                return true;
            case PgFrontendCode.Execute:
                Execute(reader.ReadCString());
                return true;
            case PgFrontendCode.Close:
                {
                    var target = reader.ReadByte();
                    var name = reader.ReadCString();
                    if (target == (byte)'S')
                        _statements.Remove(name);
                    else
                        _portals.Remove(name);
                    WriteEmpty(PgBackendCode.CloseComplete);
                    return true;
                }
            case PgFrontendCode.Sync:
                _skipUntilSync = false;
                PgMessageWriter.WriteReadyForQuery(output, PgTransactionStatus.Idle);
                return true;
            case PgFrontendCode.Flush:
                return true;
            case PgFrontendCode.Terminate:
                return false;
            case PgFrontendCode.FunctionCall:
            case PgFrontendCode.CopyData:
            case PgFrontendCode.CopyDone:
            case PgFrontendCode.CopyFail:
                ExtendedError(new AdminError(AdminSqlState.FeatureNotSupported, "mproxy: the admin console answers only SHOW commands and RELOAD"));
                return true;
            default:
                PgProtocolException.Throw($"unknown message type '{(char)code}' (0x{code:X2})");
                return false;
        }
    }

    private void SimpleQuery(string text)
    {
        var ran = false;
        foreach (var command in text.Split(';'))
        {
            if (string.IsNullOrWhiteSpace(command))
                continue;
            ran = true;
            var reply = console.Execute(command, caller);
            if (reply.Error is { } error)
            {
                WriteError(error);
                break;
            }
            WriteResult(reply.Result!, formats: [], describe: true);
        }
        if (!ran)
            PgMessageWriter.WriteEmptyQueryResponse(output);
        PgMessageWriter.WriteReadyForQuery(output, PgTransactionStatus.Idle);
    }

    private void Parse(ref PgMessageReader reader)
    {
        var name = reader.ReadCString();
        var text = reader.ReadCString();
        var commands = text.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (commands.Length > 1)
        {
            ExtendedError(new AdminError(AdminSqlState.SyntaxError, "mproxy: cannot insert multiple commands into a prepared statement"));
            return;
        }
        if (commands.Length == 1 && AdminConsole.DescribeColumns(commands[0]) is null)
        {
            // The same answer a simple query gets, at Parse as a server reports syntax errors.
            ExtendedError(console.Execute(commands[0], caller).Error!);
            return;
        }
        _statements[name] = commands.Length == 0 ? "" : commands[0];
        WriteEmpty(PgBackendCode.ParseComplete);
    }

    private void Bind(ref PgMessageReader reader)
    {
        var portal = reader.ReadCString();
        var statement = reader.ReadCString();
        var parameterFormats = reader.ReadInt16();
        for (var i = 0; i < parameterFormats; i++)
            reader.ReadInt16();
        var parameters = reader.ReadInt16();
        for (var i = 0; i < parameters; i++)
        {
            var length = reader.ReadInt32();
            if (length > 0)
                reader.ReadBytes(length);
        }
        var resultFormats = new short[reader.ReadInt16()];
        for (var i = 0; i < resultFormats.Length; i++)
            resultFormats[i] = reader.ReadInt16();
        if (!_statements.TryGetValue(statement, out var text))
        {
            ExtendedError(new AdminError("26000", $"prepared statement \"{statement}\" does not exist"));
            return;
        }
        if (parameters > 0)
        {
            ExtendedError(new AdminError("08P01", $"bind message supplies {parameters} parameters, but the admin command requires 0"));
            return;
        }
        _portals[portal] = new Portal(text, resultFormats);
        WriteEmpty(PgBackendCode.BindComplete);
    }

    private void Describe(ref PgMessageReader reader)
    {
        var target = reader.ReadByte();
        var name = reader.ReadCString();
        if (target == (byte)'S')
        {
            if (!_statements.TryGetValue(name, out var text))
            {
                ExtendedError(new AdminError("26000", $"prepared statement \"{name}\" does not exist"));
                return;
            }
            // ParameterDescription: no parameters.
            var span = output.GetSpan(7);
            span[0] = (byte)PgBackendCode.ParameterDescription;
            BinaryPrimitives.WriteInt32BigEndian(span[1..], 6);
            BinaryPrimitives.WriteInt16BigEndian(span[5..], 0);
            output.Advance(7);
            var columns = text.Length == 0 ? null : AdminConsole.DescribeColumns(text);
            if (columns is { Count: > 0 })
                WriteRowDescription(columns, []);
            else
                WriteEmpty(PgBackendCode.NoData);
            return;
        }
        if (!_portals.TryGetValue(name, out var portal))
        {
            ExtendedError(new AdminError("34000", $"portal \"{name}\" does not exist"));
            return;
        }
        // A portal is described by running its command: the rows are kept for Execute.
        portal.Reply ??= portal.Text.Length == 0 ? default : console.Execute(portal.Text, caller);
        if (portal.Reply.Value.Error is { } error)
        {
            ExtendedError(error);
            return;
        }
        if (portal.Reply.Value.Result is { HasRows: true } result)
            WriteRowDescription(result.Columns, portal.Formats);
        else
            WriteEmpty(PgBackendCode.NoData);
    }

    private void Execute(string name)
    {
        if (!_portals.TryGetValue(name, out var portal))
        {
            ExtendedError(new AdminError("34000", $"portal \"{name}\" does not exist"));
            return;
        }
        if (portal.Text.Length == 0)
        {
            PgMessageWriter.WriteEmptyQueryResponse(output);
            return;
        }
        var reply = portal.Reply ?? console.Execute(portal.Text, caller);
        // Executed once: a second Execute of the portal finds it exhausted, as a server's would be.
        portal.Reply = AdminReply.Of(new AdminResultSet(reply.Result?.Columns ?? [], [], reply.Result?.CommandTag ?? "SHOW"));
        if (reply.Error is { } error)
        {
            ExtendedError(error);
            return;
        }
        WriteResult(reply.Result!, portal.Formats, describe: false);
    }

    private void WriteResult(AdminResultSet result, short[] formats, bool describe)
    {
        foreach (var notice in result.Notices)
            PgMessageWriter.WriteNotice(output, "01000", notice);
        if (result.HasRows)
        {
            if (describe)
                WriteRowDescription(result.Columns, formats);
            foreach (var row in result.Rows)
                PgMessageWriter.WriteDataRow(output, row);
        }
        PgMessageWriter.WriteCommandComplete(output, result.CommandTag);
    }

    /// <summary>RowDescription of text columns in the formats a Bind asked for (none: text; one: for all).</summary>
    private void WriteRowDescription(IReadOnlyList<string> columns, short[] formats)
    {
        var length = 4 + 2;
        foreach (var column in columns)
            length += Encoding.UTF8.GetByteCount(column) + 1 + 18;
        var span = output.GetSpan(length + 1);
        span[0] = (byte)PgBackendCode.RowDescription;
        BinaryPrimitives.WriteInt32BigEndian(span[1..], length);
        BinaryPrimitives.WriteInt16BigEndian(span[5..], (short)columns.Count);
        var offset = 7;
        for (var i = 0; i < columns.Count; i++)
        {
            offset += Encoding.UTF8.GetBytes(columns[i], span[offset..]);
            span[offset++] = 0;
            var format = formats.Length == 0 ? (short)0 : formats.Length == 1 ? formats[0] : i < formats.Length ? formats[i] : (short)0;
            BinaryPrimitives.WriteInt32BigEndian(span[offset..], 0);            // table oid
            BinaryPrimitives.WriteInt16BigEndian(span[(offset + 4)..], 0);      // column number
            BinaryPrimitives.WriteInt32BigEndian(span[(offset + 6)..], TextOid);
            BinaryPrimitives.WriteInt16BigEndian(span[(offset + 10)..], -1);    // variable size
            BinaryPrimitives.WriteInt32BigEndian(span[(offset + 12)..], -1);    // no modifier
            BinaryPrimitives.WriteInt16BigEndian(span[(offset + 16)..], format);
            offset += 18;
        }
        output.Advance(offset);
    }

    private void WriteEmpty(PgBackendCode code)
    {
        var span = output.GetSpan(5);
        span[0] = (byte)code;
        BinaryPrimitives.WriteInt32BigEndian(span[1..], 4);
        output.Advance(5);
    }

    private void WriteError(AdminError error) =>
        PgMessageWriter.WriteError(output, "ERROR", error.SqlState, error.Message, hint: error.Hint);

    /// <summary>An error in an extended-protocol run: like a server, skip the client's messages up to its Sync.</summary>
    private void ExtendedError(AdminError error)
    {
        WriteError(error);
        _skipUntilSync = true;
    }
}
