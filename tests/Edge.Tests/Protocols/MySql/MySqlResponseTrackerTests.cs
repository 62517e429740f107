using MProxy.Edge.Protocols.MySql;

namespace MProxy.Edge.Tests.Protocols.MySql;

public sealed class MySqlResponseTrackerTests
{
    private static readonly byte[] ColumnDefinition = [3, (byte)'d', (byte)'e', (byte)'f', 0, 0, 0, 1, (byte)'a', 0, 0x0C, 0x3F, 0, 1, 0, 0, 0, 3, 0, 0, 0, 0];

    private static byte[] Ok(MySqlServerStatus status) => [0x00, 0, 0, (byte)status, (byte)((ushort)status >> 8), 0, 0];

    private static byte[] Eof(MySqlServerStatus status) => [0xFE, 0, 0, (byte)status, (byte)((ushort)status >> 8)];

    private static readonly byte[] Err = [0xFF, 0x7A, 0x04, (byte)'#', (byte)'4', (byte)'2', (byte)'S', (byte)'0', (byte)'2', (byte)'x'];

    private static MySqlResponseStep Feed(ref MySqlResponseTracker tracker, byte[] packet) =>
        tracker.Feed(packet.AsSpan(0, Math.Min(packet.Length, MySqlResponseTracker.PrefixLength)), packet.Length);

    /// <summary>Feeds packets and returns the index of the one that completed the response (-1 if none).</summary>
    private static int CompletesAt(MySqlResponseKind kind, params byte[][] packets)
    {
        var tracker = new MySqlResponseTracker();
        tracker.Begin(kind);
        for (var i = 0; i < packets.Length; i++)
            if (Feed(ref tracker, packets[i]).Complete)
                return i;
        return -1;
    }

    [Fact]
    public void ResultSet_OkPacket_CompletesWithItsStatus()
    {
        var tracker = new MySqlResponseTracker();
        tracker.Begin(MySqlResponseKind.ResultSet);
        var step = Feed(ref tracker, Ok(MySqlServerStatus.InTransaction | MySqlServerStatus.Autocommit));
        Assert.True(step.Complete);
        Assert.True(step.HasStatus);
        Assert.Equal(MySqlServerStatus.InTransaction | MySqlServerStatus.Autocommit, step.Status);
    }

    [Fact]
    public void ResultSet_ColumnsRowsAndEof_CompletesAtTheSecondEof()
    {
        byte[] row = [1, (byte)'1'];
        Assert.Equal(6, CompletesAt(MySqlResponseKind.ResultSet, [2], ColumnDefinition, ColumnDefinition, Eof(0), row, row, Eof(MySqlServerStatus.Autocommit)));
    }

    [Fact]
    public void ResultSet_RowStartingWith0xFEOfNineBytesOrMore_IsARowNotEof()
    {
        byte[] bigRow = [0xFE, 1, 0, 0, 0, 0, 0, 0, 0, (byte)'x'];
        Assert.Equal(4, CompletesAt(MySqlResponseKind.ResultSet, [1], ColumnDefinition, Eof(0), bigRow, Eof(0)));
    }

    [Fact]
    public void ResultSet_MoreResultsExist_ContinuesToTheLastResult()
    {
        var more = MySqlServerStatus.MoreResultsExist | MySqlServerStatus.Autocommit;
        Assert.Equal(5, CompletesAt(MySqlResponseKind.ResultSet, [1], ColumnDefinition, Eof(0), Eof(more), Ok(more), Ok(MySqlServerStatus.Autocommit)));
    }

    [Fact]
    public void ResultSet_ErrorInALaterResult_EndsTheWholeResponse()
    {
        var more = MySqlServerStatus.MoreResultsExist | MySqlServerStatus.Autocommit;
        Assert.Equal(1, CompletesAt(MySqlResponseKind.ResultSet, Ok(more), Err, Ok(0)));
    }

    [Fact]
    public void ResultSet_ErrorAfterRows_Completes()
    {
        var tracker = new MySqlResponseTracker();
        tracker.Begin(MySqlResponseKind.ResultSet);
        Feed(ref tracker, [1]);
        Feed(ref tracker, ColumnDefinition);
        Feed(ref tracker, Eof(0));
        Feed(ref tracker, [1, (byte)'1']);
        var step = Feed(ref tracker, Err);
        Assert.True(step.Complete);
        Assert.True(step.IsError);
        Assert.Equal(1146, step.ErrorCode);
    }

    [Fact]
    public void ResultSet_LocalInfileRequest_WaitsForTheOkAfterTheData()
    {
        var tracker = new MySqlResponseTracker();
        tracker.Begin(MySqlResponseKind.ResultSet);
        var request = Feed(ref tracker, [0xFB, (byte)'/', (byte)'f']);
        Assert.True(request.IsInfileRequest);
        Assert.False(request.Complete);
        Assert.True(Feed(ref tracker, Ok(MySqlServerStatus.Autocommit)).Complete);
    }

    [Fact]
    public void Execute_CursorOpened_CompletesAtTheColumnsEof()
    {
        Assert.Equal(2, CompletesAt(MySqlResponseKind.ResultSet, [1], ColumnDefinition, Eof(MySqlServerStatus.CursorExists)));
    }

    [Fact]
    public void Prepare_WithParametersAndColumns_CompletesAfterBothEofs()
    {
        byte[] prepareOk = [0x00, 7, 0, 0, 0, 2, 0, 1, 0, 0, 0, 0];
        var tracker = new MySqlResponseTracker();
        tracker.Begin(MySqlResponseKind.Prepare);
        var first = Feed(ref tracker, prepareOk);
        Assert.True(first.IsPrepareOk);
        Assert.Equal(7u, first.StatementId);
        Assert.Equal(2, first.Columns);
        Assert.Equal(1, first.Parameters);
        Assert.False(first.Complete);
        Assert.False(Feed(ref tracker, ColumnDefinition).Complete); // parameter
        Assert.False(Feed(ref tracker, Eof(0)).Complete);
        Assert.False(Feed(ref tracker, ColumnDefinition).Complete);
        Assert.False(Feed(ref tracker, ColumnDefinition).Complete);
        Assert.True(Feed(ref tracker, Eof(0)).Complete);
    }

    [Fact]
    public void Prepare_NoParametersNoColumns_CompletesAtPrepareOk() =>
        Assert.Equal(0, CompletesAt(MySqlResponseKind.Prepare, [0x00, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]));

    [Fact]
    public void FieldList_CompletesAtEof() =>
        Assert.Equal(2, CompletesAt(MySqlResponseKind.FieldList, ColumnDefinition, ColumnDefinition, Eof(0)));

    [Fact]
    public void Fetch_CompletesAtEofWithLastRowSent() =>
        Assert.Equal(2, CompletesAt(MySqlResponseKind.Rows, [0x00, 0, 1], [0x00, 0, 2], Eof(MySqlServerStatus.LastRowSent)));

    [Fact]
    public void Ok_SetOptionEof_Completes() =>
        Assert.Equal(0, CompletesAt(MySqlResponseKind.Ok, Eof(MySqlServerStatus.Autocommit)));

    [Fact]
    public void PacketAfterCompletion_IsAProtocolError()
    {
        var tracker = new MySqlResponseTracker();
        tracker.Begin(MySqlResponseKind.Ok);
        Feed(ref tracker, Ok(0));
        Assert.Throws<MySqlProtocolException>(() => Feed(ref tracker, Ok(0)));
    }

    [Fact]
    public void ResultSet_EofWhereAResultWasExpected_IsAProtocolError()
    {
        var tracker = new MySqlResponseTracker();
        tracker.Begin(MySqlResponseKind.ResultSet);
        Assert.Throws<MySqlProtocolException>(() => Feed(ref tracker, Eof(0)));
    }
}
