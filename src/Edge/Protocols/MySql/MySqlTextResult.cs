using System.IO.Pipelines;
using System.Text;

namespace MProxy.Edge.Protocols.MySql;

/// <summary>
/// One text-protocol result set read whole (the edge's own small queries: health checks, positions):
/// column names and rows of strings (null for SQL NULL), and whether another result follows.
/// </summary>
internal sealed record MySqlTextResult(IReadOnlyList<string> Columns, IReadOnlyList<string?[]> Rows, bool MoreResults)
{
    /// <summary>The index of <paramref name="name"/> (ASCII case-insensitive), or -1.</summary>
    public int IndexOf(string name)
    {
        for (var i = 0; i < Columns.Count; i++)
            if (string.Equals(Columns[i], name, StringComparison.OrdinalIgnoreCase))
                return i;
        return -1;
    }

    /// <summary>
    /// Reads the answer to one statement of a COM_QUERY sent without CLIENT_DEPRECATE_EOF: an ERR
    /// (thrown as <see cref="MySqlServerLoginException"/> with the server's code), an OK (no columns,
    /// no rows), or column count, column definitions, EOF, rows, EOF.
    /// </summary>
    /// <exception cref="MySqlServerLoginException">the server answered with an error, or broke the protocol.</exception>
    public static async ValueTask<MySqlTextResult> ReadAsync(PipeReader input, CancellationToken cancellationToken)
    {
        var (_, first) = await MySqlServerLogin.ReadPacketAsync(input, cancellationToken).ConfigureAwait(false);
        var reader = new Reader();
        var done = reader.Feed(first);
        while (!done)
        {
            var (_, packet) = await MySqlServerLogin.ReadPacketAsync(input, cancellationToken).ConfigureAwait(false);
            done = reader.Feed(packet);
        }
        return reader.Result!;
    }

    /// <summary>Parses a sequence of whole packets (tests and scripted servers); throws if they do not make exactly one result.</summary>
    public static MySqlTextResult Parse(IEnumerable<byte[]> packets)
    {
        var reader = new Reader();
        foreach (var packet in packets)
        {
            if (reader.Feed(packet))
                return reader.Result!;
        }
        throw new MySqlServerLoginException(0, "08S01", "the result set ended early");
    }

    /// <summary>The row values of a text-protocol row packet: length-encoded strings, 0xFB for NULL.</summary>
    internal static string?[] ParseRow(ReadOnlySpan<byte> packet, int columns)
    {
        var values = new string?[columns];
        var reader = new MySqlPayloadReader(packet);
        for (var i = 0; i < columns; i++)
        {
            if (reader.Remaining == 0)
                throw new MySqlServerLoginException(0, "08S01", $"a result row has {i} values instead of {columns}");
            if (reader.Rest[0] == 0xFB)
            {
                reader.Skip(1);
                continue;
            }
            values[i] = Encoding.UTF8.GetString(reader.ReadLengthEncodedBytes());
        }
        return values;
    }

    /// <summary>The column name (<c>name</c>, the alias) of a ColumnDefinition41 packet.</summary>
    internal static string ParseColumnName(ReadOnlySpan<byte> packet)
    {
        var reader = new MySqlPayloadReader(packet);
        for (var i = 0; i < 4; i++)
            reader.ReadLengthEncodedBytes(); // catalog, schema, table, org_table
        return Encoding.UTF8.GetString(reader.ReadLengthEncodedBytes());
    }

    private static bool IsEof(byte[] packet) => packet.Length is > 0 and < 9 && packet[0] == MySqlResponseHeader.Eof;

    private static bool MoreResultsIn(byte[] eofOrOk, int statusOffset) =>
        eofOrOk.Length >= statusOffset + 2 && (((MySqlServerStatus)BitConverter.ToUInt16(eofOrOk, statusOffset)) & MySqlServerStatus.MoreResultsExist) != 0;

    /// <summary>The result-set state machine, one packet at a time.</summary>
    private sealed class Reader
    {
        private int _columnCount = -1;
        private bool _inRows;
        private readonly List<string> _columns = [];
        private readonly List<string?[]> _rows = [];

        public MySqlTextResult? Result { get; private set; }

        /// <summary>Consumes a packet; true when the result is complete.</summary>
        public bool Feed(byte[] packet)
        {
            try
            {
                return FeedCore(packet);
            }
            catch (MySqlProtocolException e)
            {
                throw new MySqlServerLoginException(0, "08S01", "malformed result set: " + e.Message);
            }
        }

        private bool FeedCore(byte[] packet)
        {
            if (packet.Length == 0)
                throw new MySqlServerLoginException(0, "08S01", "empty packet in a result set");
            if (packet[0] == MySqlResponseHeader.Err)
            {
                var (code, sqlState, message) = MySqlServerLogin.ParseError(packet);
                throw new MySqlServerLoginException(code, sqlState, message);
            }
            if (_columnCount < 0)
            {
                if (packet[0] == MySqlResponseHeader.Ok)
                {
                    var ok = new MySqlPayloadReader(packet);
                    ok.Skip(1);
                    ok.ReadLengthEncoded();
                    ok.ReadLengthEncoded();
                    Result = new MySqlTextResult([], [], MoreResultsIn(packet, ok.Offset));
                    return true;
                }
                var count = new MySqlPayloadReader(packet).ReadLengthEncoded();
                if (count is 0 or > 4096)
                    throw new MySqlServerLoginException(0, "08S01", $"a result set with {count} columns");
                _columnCount = (int)count;
                return false;
            }
            if (!_inRows)
            {
                if (_columns.Count < _columnCount)
                {
                    _columns.Add(ParseColumnName(packet));
                    return false;
                }
                if (!IsEof(packet))
                    throw new MySqlServerLoginException(0, "08S01", "no EOF after the column definitions");
                _inRows = true;
                return false;
            }
            if (IsEof(packet))
            {
                Result = new MySqlTextResult(_columns, _rows, MoreResultsIn(packet, 3));
                return true;
            }
            _rows.Add(ParseRow(packet, _columnCount));
            return false;
        }
    }
}
