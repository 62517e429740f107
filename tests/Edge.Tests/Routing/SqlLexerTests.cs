using System.Text;
using MProxy.Edge.Routing;

namespace MProxy.Edge.Tests.Routing;

public sealed class SqlLexerTests
{
    private const SqlDialect Pg = SqlDialect.PostgreSql;
    private const SqlDialect My = SqlDialect.MySql;

    private static List<(SqlTokenKind Kind, string Text)> Lex(string sql, SqlDialect dialect, SqlLexerOptions options = SqlLexerOptions.None)
    {
        var bytes = Encoding.UTF8.GetBytes(sql);
        var lexer = new SqlLexer(bytes, dialect, options);
        var tokens = new List<(SqlTokenKind, string)>();
        while (lexer.Next(out var token))
            tokens.Add((token.Kind, Encoding.UTF8.GetString(token.Slice(bytes))));
        return tokens;
    }

    private static string Describe(List<(SqlTokenKind Kind, string Text)> tokens) =>
        string.Join(" | ", tokens.Select(t => $"{t.Kind}:{t.Text}"));

    public static TheoryData<SqlDialect, string, string> Tokens => new()
    {
        { Pg, "SELECT 1", "Word:SELECT | Number:1" },
        { Pg, "a.b, (c);", "Word:a | Dot:. | Word:b | Comma:, | LeftParen:( | Word:c | RightParen:) | Semicolon:;" },
        { Pg, "a::int", "Word:a | Operator::: | Word:int" },
        { Pg, "x := 1", "Word:x | Operator::= | Number:1" },
        { Pg, "$1 + $23", "Parameter:$1 | Operator:+ | Parameter:$23" },
        { Pg, "$$x$$ $a$ y $a$ $b1$z$b1$", "String:$$x$$ | String:$a$ y $a$ | String:$b1$z$b1$" },
        { Pg, "a$b $", "Word:a$b | Operator:$" },
        { Pg, "'a''b' E'c\\'d' e", "String:'a''b' | String:E'c\\'d' | Word:e" },
        { Pg, "'a\\' b", "String:'a\\' | Word:b" },
        { Pg, "B'101' X'1F' N'n' U&'u' U&\"q\"", "String:B'101' | String:X'1F' | String:N'n' | String:U&'u' | QuotedIdentifier:U&\"q\"" },
        { Pg, "\"a\"\"b\" \"\"", "QuotedIdentifier:\"a\"\"b\" | QuotedIdentifier:\"\"" },
        { Pg, "/* a /* b */ c */ x", "BlockComment:/* a /* b */ c */ | Word:x" },
        { Pg, "x -- c\ny", "Word:x | LineComment:-- c | Word:y" },
        { Pg, "x--c", "Word:x | LineComment:--c" },
        { Pg, "a=-1", "Word:a | Operator:= | Operator:- | Number:1" },
        { Pg, "a<>b a>=b a!=b", "Word:a | Operator:<> | Word:b | Word:a | Operator:>= | Word:b | Word:a | Operator:!= | Word:b" },
        { Pg, "j @> '{}' ? 'k' #- x", "Word:j | Operator:@> | String:'{}' | Operator:? | String:'k' | Operator:#- | Word:x" },
        { Pg, "a*/*c*/b", "Word:a | Operator:* | BlockComment:/*c*/ | Word:b" },
        { Pg, "1 1.5 .5 1e10 1.5E-3 0x1F 0o17 0b101 1_000", "Number:1 | Number:1.5 | Number:.5 | Number:1e10 | Number:1.5E-3 | Number:0x1F | Number:0o17 | Number:0b101 | Number:1_000" },
        { Pg, "arr[1:2]", "Word:arr | LeftBracket:[ | Number:1 | Operator:: | Number:2 | RightBracket:]" },
        { Pg, "tablé ünïcode", "Word:tablé | Word:ünïcode" },
        { Pg, "# x", "Operator:# | Word:x" },
        { Pg, "`x`", "Operator:` | Word:x | Operator:`" },
        { My, "SELECT ?", "Word:SELECT | Parameter:?" },
        { My, "# c\nx", "LineComment:# c | Word:x" },
        { My, "a--b", "Word:a | Operator:- | Operator:- | Word:b" },
        { My, "a -- b\nc", "Word:a | LineComment:-- b | Word:c" },
        { My, "a --", "Word:a | LineComment:--" },
        { My, "@x @@session.y @'q r' @`z`", "Variable:@x | Variable:@@session | Dot:. | Word:y | Variable:@'q r' | Variable:@`z`" },
        { My, "`a``b` \"s\\\"t\" 's''u'", "QuotedIdentifier:`a``b` | String:\"s\\\"t\" | String:'s''u'" },
        { My, "/*!40101 SET x */ y", "Word:SET | Word:x | Word:y" },
        { My, "/*M!100101 a */ b", "Word:a | Word:b" },
        { My, "/*+ hint */ x", "BlockComment:/*+ hint */ | Word:x" },
        { My, "/* /* */ x", "BlockComment:/* /* */ | Word:x" },
        { My, "1abc 0x1F 0xZZ b'01' X'AF' N'x'", "Word:1abc | Number:0x1F | Word:0xZZ | String:b'01' | String:X'AF' | String:N'x'" },
        { My, "a<=>b x:=1 j->>'$.a'", "Word:a | Operator:<=> | Word:b | Word:x | Operator::= | Number:1 | Word:j | Operator:->> | String:'$.a'" },
        { My, "$a a$b", "Word:$a | Word:a$b" },
    };

    [Theory]
    [MemberData(nameof(Tokens))]
    public void Next_Text_YieldsExpectedTokens(SqlDialect dialect, string sql, string expected)
    {
        Assert.Equal(expected, Describe(Lex(sql, dialect)));
    }

    [Theory]
    [InlineData(true, "String:'a\\' | Word:z | String:'")]
    [InlineData(false, "String:'a\\' z'")]
    public void Next_PostgresStandardConformingStrings_DecidesBackslashEscapes(bool standardConformingStrings, string expected)
    {
        var options = standardConformingStrings ? SqlLexerOptions.None : SqlLexerOptions.BackslashInPlainStrings;

        Assert.Equal(expected, Describe(Lex("'a\\' z'", Pg, options)));
    }

    [Theory]
    [InlineData(false, "String:\"a\"")]
    [InlineData(true, "QuotedIdentifier:\"a\"")]
    public void Next_MySqlAnsiQuotes_MakesDoubleQuotesAnIdentifier(bool ansiQuotes, string expected)
    {
        var options = ansiQuotes ? SqlLexerOptions.AnsiQuotes : SqlLexerOptions.None;

        Assert.Equal(expected, Describe(Lex("\"a\"", My, options)));
    }

    public static TheoryData<SqlDialect, string> UnterminatedTexts => new()
    {
        { Pg, "'abc" },
        { Pg, "E'abc\\'" },
        { Pg, "\"abc" },
        { Pg, "$$abc" },
        { Pg, "$x$abc$y$" },
        { Pg, "/* abc" },
        { Pg, "/* /* */" },
        { Pg, "U&'abc" },
        { My, "`abc" },
        { My, "'abc\\'" },
        { My, "\"abc" },
        { My, "/* abc" },
        { My, "@'abc" },
    };

    [Theory]
    [MemberData(nameof(UnterminatedTexts))]
    public void Next_UnterminatedToken_EndsAtEndOfTextWithFlag(SqlDialect dialect, string sql)
    {
        var bytes = Encoding.UTF8.GetBytes("x " + sql);
        var lexer = new SqlLexer(bytes, dialect);

        Assert.True(lexer.Next(out _));
        Assert.True(lexer.Next(out var token));
        Assert.True(token.IsUnterminated);
        Assert.Equal(bytes.Length, token.End);
        Assert.False(lexer.Next(out _));
        Assert.True(lexer.HadUnterminated);
    }

    [Fact]
    public void Next_UnclosedMySqlExecutableComment_FlagsUnterminatedAtEnd()
    {
        var lexer = new SqlLexer("/*! SELECT 1"u8, My);

        while (lexer.Next(out _))
        {
        }

        Assert.True(lexer.HadUnterminated);
    }

    [Theory]
    [InlineData("select", nameof(SqlKeyword.Select))]
    [InlineData("SeLeCt", nameof(SqlKeyword.Select))]
    [InlineData("PERSIST_ONLY", nameof(SqlKeyword.PersistOnly))]
    [InlineData("characteristics", nameof(SqlKeyword.Characteristics))]
    [InlineData("xa", nameof(SqlKeyword.Xa))]
    [InlineData("selects", nameof(SqlKeyword.None))]
    [InlineData("sel", nameof(SqlKeyword.None))]
    [InlineData("s", nameof(SqlKeyword.None))]
    [InlineData("_select", nameof(SqlKeyword.None))]
    [InlineData("sélect", nameof(SqlKeyword.None))]
    [InlineData("", nameof(SqlKeyword.None))]
    public void Lookup_Word_FindsKeywordIgnoringAsciiCase(string word, string keyword)
    {
        Assert.Equal(Enum.Parse<SqlKeyword>(keyword), SqlKeywords.Lookup(Encoding.UTF8.GetBytes(word)));
    }

    [Fact]
    public void Lookup_EveryKeywordSpelling_FindsItself()
    {
        foreach (var keyword in Enum.GetValues<SqlKeyword>())
        {
            if (keyword == SqlKeyword.None)
                continue;
            var spelling = SqlKeywords.Spell(keyword);
            Assert.Equal(keyword, SqlKeywords.Lookup(Encoding.ASCII.GetBytes(spelling)));
            Assert.Equal(keyword, SqlKeywords.Lookup(Encoding.ASCII.GetBytes(spelling.ToLowerInvariant())));
        }
    }
}
