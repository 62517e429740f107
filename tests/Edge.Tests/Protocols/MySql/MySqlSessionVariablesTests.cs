using System.Text;
using MProxy.Edge.Protocols.MySql;
using MProxy.Edge.Routing;

namespace MProxy.Edge.Tests.Protocols.MySql;

public sealed class MySqlSessionVariablesTests
{
    private static List<(string Name, string Assignment)>? Parse(string sql) =>
        MySqlSessionVariables.TryParse(Encoding.UTF8.GetBytes(sql), RoutingRules.Default, out var updates) ? updates : null;

    [Theory]
    [InlineData("SET NAMES utf8mb4", "names", "NAMES utf8mb4")]
    [InlineData("SET NAMES 'latin1' COLLATE 'latin1_bin'", "names", "NAMES 'latin1' COLLATE 'latin1_bin'")]
    [InlineData("set character_set_results = NULL", "character_set_results", "character_set_results = NULL")]
    [InlineData("SET SESSION time_zone='+00:00'", "time_zone", "time_zone='+00:00'")]
    [InlineData("SET @@session.collation_connection = utf8mb4_bin", "collation_connection", "@@session.collation_connection = utf8mb4_bin")]
    [InlineData("SET CHARACTER SET utf8", "charset", "CHARACTER SET utf8")]
    [InlineData("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED", "transaction", "SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")]
    public void TryParse_TrackedSet_YieldsTheAssignment(string sql, string name, string assignment) =>
        Assert.Equal([(name, assignment)], Parse(sql)!);

    [Theory]
    [InlineData("SET @x = 1")]
    [InlineData("SET GLOBAL time_zone = '+00:00'")]
    [InlineData("SET @@global.time_zone = '+00:00'")]
    [InlineData("SET sql_mode = 'ANSI'")]
    [InlineData("SET NAMES utf8mb4, @x = 1")]
    [InlineData("SET time_zone = @tz")]
    [InlineData("SET NAMES utf8mb4; SELECT 1")]
    [InlineData("SELECT 1")]
    public void TryParse_AnythingElse_ReturnsFalse(string sql) => Assert.Null(Parse(sql));

    [Fact]
    public void TryParse_Autocommit_IsAcceptedButNotTracked() => Assert.Empty(Parse("SET autocommit = 0")!);

    [Fact]
    public void TryParse_SetTransactionForTheNextTransactionOnly_IsNotTracked() => Assert.Empty(Parse("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")!);

    [Fact]
    public void With_SetNamesReplacesTheCharacterSetFamily_AndTextReplaysInOrder()
    {
        var variables = MySqlSessionVariables.Default
            .With(Parse("SET character_set_results = NULL, time_zone = '+01:00'")!)
            .With(Parse("SET NAMES utf8mb4")!)
            .With(Parse("SET character_set_results = NULL")!)
            .With(Parse("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")!);
        Assert.Equal("SET time_zone = '+01:00', NAMES utf8mb4, character_set_results = NULL; SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED", variables.Text);
        Assert.False(variables.IsDefault);
        Assert.Equal("", MySqlSessionVariables.Default.Text);
    }

    [Fact]
    public void With_SameVariableTwice_KeepsTheLastValue() =>
        Assert.Equal("SET time_zone = 'b'", MySqlSessionVariables.Default.With(Parse("SET time_zone = 'a'")!).With(Parse("SET time_zone = 'b'")!).Text);
}
