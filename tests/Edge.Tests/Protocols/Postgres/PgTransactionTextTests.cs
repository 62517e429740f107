using System.Text;
using MProxy.Edge.Protocols.Postgres;

namespace MProxy.Edge.Tests.Protocols.Postgres;

/// <summary>The query texts the edge answers itself when it defers a BEGIN, and those it leaves to the server.</summary>
public class PgTransactionTextTests
{
    [Theory]
    [InlineData("BEGIN", "Begin")]
    [InlineData("begin;", "Begin")]
    [InlineData("  Begin Work ; \n", "Begin")]
    [InlineData("BEGIN TRANSACTION", "Begin")]
    [InlineData("BEGIN ISOLATION LEVEL REPEATABLE READ", "Begin")]
    [InlineData("BEGIN ISOLATION LEVEL READ COMMITTED, READ ONLY", "Begin")]
    [InlineData("begin transaction isolation level read uncommitted not deferrable", "Begin")]
    [InlineData("BEGIN READ ONLY DEFERRABLE", "Begin")]
    [InlineData("START TRANSACTION", "StartTransaction")]
    [InlineData("start transaction read only;", "StartTransaction")]
    [InlineData("COMMIT", "Commit")]
    [InlineData("end;", "Commit")]
    [InlineData("COMMIT WORK", "Commit")]
    [InlineData("ROLLBACK", "Rollback")]
    [InlineData("abort transaction;", "Rollback")]
    public void Recognized(string text, string expected)
    {
        Assert.Equal(Enum.Parse<PgTransactionCommand>(expected), PgTransactionText.Classify(Encoding.UTF8.GetBytes(text)));
        Assert.True(PgTransactionText.MayBeOne(Encoding.UTF8.GetBytes(text)));
    }

    [Theory]
    [InlineData("SELECT abalance FROM pgbench_accounts WHERE aid = 1")]
    [InlineData("select 1")]
    [InlineData("UPDATE t SET a = 1")]
    [InlineData("INSERT INTO t VALUES (1)")]
    [InlineData("/* c */ BEGIN")]
    public void FirstLook_SkipsMostStatements(string text) =>
        Assert.False(PgTransactionText.MayBeOne(Encoding.UTF8.GetBytes(text)));

    [Theory]
    // Modes a server in recovery refuses: sent at once, so that their failure is the BEGIN's own.
    [InlineData("BEGIN ISOLATION LEVEL SERIALIZABLE")]
    [InlineData("BEGIN READ WRITE")]
    [InlineData("START TRANSACTION READ WRITE")]
    // Not plain: the server decides.
    [InlineData("BEGIN; SELECT 1")]
    [InlineData("BEGIN /* hint */")]
    [InlineData("-- c\nBEGIN")]
    [InlineData("BEGIN READ ONLY READ ONLY")]
    [InlineData("BEGIN ISOLATION LEVEL READ COMMITTED ISOLATION LEVEL REPEATABLE READ")]
    [InlineData("BEGIN ISOLATION LEVEL")]
    [InlineData("BEGIN ISOLATION LEVEL READ")]
    [InlineData("BEGIN READ ONLY,")]
    [InlineData("BEGIN, READ ONLY")]
    [InlineData("BEGIN NOT")]
    [InlineData("BEGIN WORK WORK")]
    [InlineData("BEGIN1")]
    [InlineData("BEGINNING")]
    [InlineData("START")]
    [InlineData("START TRANSACTION;;")]
    [InlineData("COMMIT AND CHAIN")]
    [InlineData("ROLLBACK AND NO CHAIN")]
    [InlineData("ROLLBACK TO SAVEPOINT a")]
    [InlineData("COMMIT PREPARED 'x'")]
    [InlineData("ROLLBACK;;")]
    [InlineData("SELECT 1")]
    [InlineData("")]
    [InlineData(";")]
    public void LeftToTheServer(string text) =>
        Assert.Equal(PgTransactionCommand.Other, PgTransactionText.Classify(Encoding.UTF8.GetBytes(text)));

    [Fact]
    public void LongerThanTheLimit_IsLeftToTheServer()
    {
        var text = "BEGIN" + new string(' ', PgTransactionText.MaxLength);
        Assert.Equal(PgTransactionCommand.Begin, PgTransactionText.Classify(Encoding.UTF8.GetBytes(text[..PgTransactionText.MaxLength])));
        Assert.Equal(PgTransactionCommand.Other, PgTransactionText.Classify(Encoding.UTF8.GetBytes(text)));
    }

    [Theory]
    [InlineData("Begin", false, "BEGIN")]
    [InlineData("StartTransaction", false, "START TRANSACTION")]
    [InlineData("Commit", false, "COMMIT")]
    [InlineData("Commit", true, "ROLLBACK")]
    [InlineData("Rollback", false, "ROLLBACK")]
    [InlineData("Rollback", true, "ROLLBACK")]
    public void Tags_AreTheServers(string command, bool failed, string tag) =>
        Assert.Equal(tag, PgTransactionText.Tag(Enum.Parse<PgTransactionCommand>(command), failed));
}
