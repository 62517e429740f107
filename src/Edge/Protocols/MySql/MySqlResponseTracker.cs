using System.Buffers.Binary;

namespace MProxy.Edge.Protocols.MySql;

/// <summary>The shape of the response a command gets, as the server connection tracks it.</summary>
internal enum MySqlResponseKind : byte
{
    /// <summary>COM_QUERY, COM_STMT_EXECUTE: OK, ERR, LOCAL INFILE request, or result sets (text or binary), chained by SERVER_MORE_RESULTS_EXISTS.</summary>
    ResultSet,

    /// <summary>COM_STMT_FETCH: rows up to EOF or ERR.</summary>
    Rows,

    /// <summary>COM_STMT_PREPARE: ERR, or PREPARE_OK then parameter and column definitions, each group ended by EOF.</summary>
    Prepare,

    /// <summary>COM_PING, COM_INIT_DB, COM_RESET_CONNECTION, COM_STMT_RESET, COM_SET_OPTION: one OK, EOF or ERR.</summary>
    Ok,

    /// <summary>COM_FIELD_LIST: column definitions up to EOF, or ERR.</summary>
    FieldList,

    /// <summary>COM_STATISTICS: one packet, whatever it holds.</summary>
    Single,
}

/// <summary>What one response packet meant.</summary>
internal readonly struct MySqlResponseStep
{
    /// <summary>The last packet of the response.</summary>
    public bool Complete { get; init; }

    public bool IsError { get; init; }

    /// <summary>The server asks for a LOCAL INFILE (0xFB): the client sends the file next.</summary>
    public bool IsInfileRequest { get; init; }

    /// <summary>The packet carried server status flags (OK or EOF).</summary>
    public bool HasStatus { get; init; }

    public MySqlServerStatus Status { get; init; }

    public ushort ErrorCode { get; init; }

    /// <summary>A PREPARE_OK packet: its statement id and counts.</summary>
    public bool IsPrepareOk { get; init; }

    public uint StatementId { get; init; }

    public ushort Columns { get; init; }

    public ushort Parameters { get; init; }

    /// <summary>A row of a result set (text or binary protocol).</summary>
    public bool IsRow { get; init; }
}

/// <summary>
/// Follows one command's response packet by packet and says when it is complete, from the first
/// bytes of each packet only (<see cref="PrefixLength"/>): the relay never needs a whole row.
/// Decisions without I/O; continuation packets of a split message are not fed.
/// </summary>
internal struct MySqlResponseTracker
{
    /// <summary>Bytes of a packet's payload the tracker needs (fewer if the packet is shorter): enough for any OK, EOF, ERR header or PREPARE_OK.</summary>
    public const int PrefixLength = 32;

    private enum Phase : byte
    {
        Start,
        Columns,
        ColumnsEof,
        Rows,
        PrepareParameters,
        PrepareParametersEof,
        PrepareColumns,
        PrepareColumnsEof,
        InfileResult,
        FieldList,
        Done,
    }

    private MySqlResponseKind _kind;
    private Phase _phase;
    private ulong _remaining;
    private ushort _prepareColumns;

    public readonly bool IsDone => _phase == Phase.Done;

    public void Begin(MySqlResponseKind kind)
    {
        _kind = kind;
        _phase = kind switch
        {
            MySqlResponseKind.Rows => Phase.Rows,
            MySqlResponseKind.FieldList => Phase.FieldList,
            _ => Phase.Start,
        };
        _remaining = 0;
        _prepareColumns = 0;
    }

    /// <summary>Feeds the first bytes of the next packet (<paramref name="payloadLength"/> is the packet's whole length).</summary>
    /// <exception cref="MySqlProtocolException">the packet cannot come at this point.</exception>
    public MySqlResponseStep Feed(ReadOnlySpan<byte> prefix, int payloadLength)
    {
        if (_phase == Phase.Done)
            MySqlProtocolException.Throw("response packet after the response was complete");
        if (payloadLength == 0)
        {
            if (_phase == Phase.Rows)
                return default;
            MySqlProtocolException.Throw("empty response packet");
        }
        var header = prefix[0];
        if (header == MySqlResponseHeader.Err && _phase is not (Phase.Columns or Phase.PrepareParameters or Phase.PrepareColumns))
            return Error(prefix);
        var isEof = header == MySqlResponseHeader.Eof && payloadLength < 9;
        switch (_phase)
        {
            case Phase.Start:
                return Start(prefix, payloadLength, isEof);
            case Phase.Columns:
            case Phase.PrepareParameters:
            case Phase.PrepareColumns:
                return Advance();
            case Phase.ColumnsEof:
                {
                    var status = ReadEof(prefix, isEof);
                    // A cursor was opened (COM_STMT_EXECUTE with a cursor type): rows come with COM_STMT_FETCH.
                    if ((status & MySqlServerStatus.CursorExists) != 0)
                        return Finish(status);
                    _phase = Phase.Rows;
                    return new MySqlResponseStep { HasStatus = true, Status = status };
                }
            case Phase.Rows:
                if (!isEof)
                    return new MySqlResponseStep { IsRow = true };
                return EndOfResult(ReadEof(prefix, isEof));
            case Phase.FieldList:
                return isEof ? Finish(ReadEof(prefix, isEof)) : default;
            case Phase.PrepareParametersEof:
                ReadEof(prefix, isEof);
                if (_prepareColumns > 0)
                {
                    _phase = Phase.PrepareColumns;
                    _remaining = _prepareColumns;
                    return default;
                }
                _phase = Phase.Done;
                return new MySqlResponseStep { Complete = true };
            case Phase.PrepareColumnsEof:
                ReadEof(prefix, isEof);
                _phase = Phase.Done;
                return new MySqlResponseStep { Complete = true };
            case Phase.InfileResult:
                if (header != MySqlResponseHeader.Ok)
                    MySqlProtocolException.Throw($"unexpected packet 0x{header:X2} after LOCAL INFILE data");
                return EndOfResult(ReadOk(prefix));
            default:
                MySqlProtocolException.Throw("unexpected response packet");
                return default;
        }
    }

    private MySqlResponseStep Start(ReadOnlySpan<byte> prefix, int payloadLength, bool isEof)
    {
        var header = prefix[0];
        switch (_kind)
        {
            case MySqlResponseKind.Single:
                _phase = Phase.Done;
                return new MySqlResponseStep { Complete = true };
            case MySqlResponseKind.Ok:
                if (header == MySqlResponseHeader.Ok)
                    return Finish(ReadOk(prefix));
                if (isEof)
                    return Finish(ReadEof(prefix, isEof));
                MySqlProtocolException.Throw($"unexpected packet 0x{header:X2} where OK was expected");
                return default;
            case MySqlResponseKind.Prepare:
                {
                    if (header != MySqlResponseHeader.Ok || payloadLength < 12)
                        MySqlProtocolException.Throw($"unexpected packet 0x{header:X2} where PREPARE_OK was expected");
                    var id = BinaryPrimitives.ReadUInt32LittleEndian(prefix[1..]);
                    var columns = BinaryPrimitives.ReadUInt16LittleEndian(prefix[5..]);
                    var parameters = BinaryPrimitives.ReadUInt16LittleEndian(prefix[7..]);
                    _prepareColumns = columns;
                    if (parameters > 0)
                    {
                        _phase = Phase.PrepareParameters;
                        _remaining = parameters;
                    }
                    else if (columns > 0)
                    {
                        _phase = Phase.PrepareColumns;
                        _remaining = columns;
                    }
                    else
                    {
                        _phase = Phase.Done;
                    }
                    return new MySqlResponseStep { IsPrepareOk = true, StatementId = id, Columns = columns, Parameters = parameters, Complete = _phase == Phase.Done };
                }
            default: // ResultSet
                if (header == MySqlResponseHeader.Ok)
                    return EndOfResult(ReadOk(prefix));
                if (header == MySqlResponseHeader.LocalInfile)
                {
                    _phase = Phase.InfileResult;
                    return new MySqlResponseStep { IsInfileRequest = true };
                }
                if (isEof)
                    MySqlProtocolException.Throw("EOF where a result set was expected");
                var reader = new MySqlPayloadReader(prefix);
                var count = reader.ReadLengthEncoded();
                if (count == 0)
                    MySqlProtocolException.Throw("result set with no columns");
                _phase = Phase.Columns;
                _remaining = count;
                return default;
        }
    }

    private MySqlResponseStep Advance()
    {
        if (--_remaining == 0)
        {
            _phase = _phase switch
            {
                Phase.Columns => Phase.ColumnsEof,
                Phase.PrepareParameters => Phase.PrepareParametersEof,
                _ => Phase.PrepareColumnsEof,
            };
        }
        return default;
    }

    private MySqlResponseStep EndOfResult(MySqlServerStatus status)
    {
        if ((status & MySqlServerStatus.MoreResultsExist) != 0)
        {
            _phase = Phase.Start;
            return new MySqlResponseStep { HasStatus = true, Status = status };
        }
        return Finish(status);
    }

    private MySqlResponseStep Finish(MySqlServerStatus status)
    {
        _phase = Phase.Done;
        return new MySqlResponseStep { Complete = true, HasStatus = true, Status = status };
    }

    private MySqlResponseStep Error(ReadOnlySpan<byte> prefix)
    {
        _phase = Phase.Done;
        var code = prefix.Length >= 3 ? BinaryPrimitives.ReadUInt16LittleEndian(prefix[1..]) : (ushort)0;
        return new MySqlResponseStep { Complete = true, IsError = true, ErrorCode = code };
    }

    /// <summary>The status flags of an OK packet: 0x00, affected rows and last insert id (length-encoded), status, warnings.</summary>
    public static MySqlServerStatus ReadOk(ReadOnlySpan<byte> prefix)
    {
        var reader = new MySqlPayloadReader(prefix);
        reader.Skip(1);
        reader.ReadLengthEncoded();
        reader.ReadLengthEncoded();
        return (MySqlServerStatus)reader.ReadUInt16();
    }

    private static MySqlServerStatus ReadEof(ReadOnlySpan<byte> prefix, bool isEof)
    {
        if (!isEof)
            MySqlProtocolException.Throw($"unexpected packet 0x{prefix[0]:X2} where EOF was expected");
        return prefix.Length >= 5 ? (MySqlServerStatus)BinaryPrimitives.ReadUInt16LittleEndian(prefix[3..]) : MySqlServerStatus.None;
    }
}
