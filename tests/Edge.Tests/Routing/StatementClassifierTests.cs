using System.Text;
using MProxy.Edge.Routing;

namespace MProxy.Edge.Tests.Routing;

public sealed class StatementClassifierTests
{
    private const SqlDialect Pg = SqlDialect.PostgreSql;
    private const SqlDialect My = SqlDialect.MySql;

    private static StatementInfo Classify(string sql, SqlDialect dialect, RoutingRules? rules = null) =>
        StatementClassifier.Classify(Encoding.UTF8.GetBytes(sql), dialect, rules ?? RoutingRules.Default);

    public static TheoryData<SqlDialect, string, int> Counts => new()
    {
        { Pg, "", 0 },
        { Pg, ";;", 0 },
        { Pg, "-- nothing\n/* here */", 0 },
        { Pg, "SELECT 1", 1 },
        { Pg, "SELECT 1;", 1 },
        { Pg, "SELECT 1; SELECT 2", 2 },
        { Pg, "SELECT 1;; ;SELECT 2;", 2 },
        { Pg, "SELECT ';'; SELECT $$;$$; SELECT \";\"", 3 },
        { Pg, "BEGIN; UPDATE t SET a = 1; COMMIT", 3 },
        { Pg, "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END; SELECT 3", 2 },
        { Pg, "CREATE RULE r AS ON INSERT TO t DO ALSO (DELETE FROM u; DELETE FROM v)", 1 },
        { Pg, "EXPLAIN ANALYZE SELECT 1; SELECT 2", 2 },
        { Pg, "DECLARE c CURSOR FOR SELECT 1; FETCH c", 2 },
        { Pg, "SELECT 1 -- ; SELECT 2", 1 },
        { My, "SELECT 1; SELECT 2; SELECT 3", 3 },
        { My, "SELECT '\\';'; SELECT 2", 2 },
        { My, "CREATE PROCEDURE p() BEGIN DECLARE x INT; CASE x WHEN 1 THEN SELECT 1; END CASE; WHILE x < 3 DO SET x = x + 1; END WHILE; END; SELECT 1", 2 },
        { My, "SET @a = 1, @b = 2; SELECT @a", 2 },
        { My, "SELECT 1 # ; SELECT 2", 1 },
    };

    [Theory]
    [MemberData(nameof(Counts))]
    public void Classify_Text_CountsStatements(SqlDialect dialect, string sql, int count)
    {
        var info = Classify(sql, dialect);

        Assert.Equal(count, info.StatementCount);
        Assert.Equal(count == 0, info.IsEmpty);
    }

    public static TheoryData<SqlDialect, string, string> Names => new()
    {
        { Pg, "PREPARE q1 AS SELECT 1", "q1" },
        { Pg, "PREPARE q1 (int, text) AS SELECT $1, $2", "q1" },
        { Pg, "/* c */ EXECUTE \"Q\"(1)", "\"Q\"" },
        { Pg, "DEALLOCATE PREPARE s", "s" },
        { Pg, "DEALLOCATE s", "s" },
        { Pg, "DEALLOCATE ALL", "" },
        { Pg, "PREPARE TRANSACTION 'gid'", "" },
        { Pg, "SELECT 1; EXECUTE second", "second" },
        { My, "PREPARE stmt1 FROM 'SELECT 1'", "stmt1" },
        { My, "EXECUTE stmt1 USING @a, @b", "stmt1" },
        { My, "DROP PREPARE `my stmt`", "`my stmt`" },
        { My, "SELECT 1", "" },
    };

    [Theory]
    [MemberData(nameof(Names))]
    public void Classify_SqlLevelPreparedStatement_ExposesNameRange(SqlDialect dialect, string sql, string name)
    {
        var bytes = Encoding.UTF8.GetBytes(sql);

        var info = StatementClassifier.Classify(bytes, dialect, RoutingRules.Default);

        Assert.Equal(name, Encoding.UTF8.GetString(info.StatementName.Slice(bytes)));
    }

    [Fact]
    public void Split_MultiStatementText_YieldsEachStatementWithItsTextAndName()
    {
        var bytes = Encoding.UTF8.GetBytes("PREPARE a AS SELECT 1; /* x */ EXECUTE a ;DEALLOCATE a;; SELECT 'x;y'");
        var kinds = new List<StatementKind>();
        var names = new List<string>();
        var texts = new List<string>();

        foreach (var statement in StatementClassifier.Split(bytes, Pg, RoutingRules.Default))
        {
            kinds.Add(statement.Kind);
            names.Add(Encoding.UTF8.GetString(statement.StatementName.Slice(bytes)));
            texts.Add(Encoding.UTF8.GetString(statement.Text.Slice(bytes)));
        }

        Assert.Equal([StatementKind.Prepare, StatementKind.Execute, StatementKind.Deallocate, StatementKind.Select], kinds);
        Assert.Equal(["a", "a", "a", ""], names);
        Assert.Equal(["PREPARE a AS SELECT 1", "EXECUTE a", "DEALLOCATE a", "SELECT 'x;y'"], texts);
    }

    [Fact]
    public void Split_Statements_CarryTheirOwnEffects()
    {
        var bytes = Encoding.UTF8.GetBytes("BEGIN READ ONLY; SELECT nextval('s'); COMMIT");
        var statements = new List<SqlStatement>();

        foreach (var statement in StatementClassifier.Split(bytes, Pg, RoutingRules.Default))
            statements.Add(statement);

        Assert.Equal(3, statements.Count);
        Assert.Equal((StatementAccess.Read, TransactionBoundary.Opens), (statements[0].Access, statements[0].Boundary));
        Assert.Equal(StatementAccess.Write, statements[1].Access);
        Assert.Equal((StatementAccess.Neutral, TransactionBoundary.Closes), (statements[2].Access, statements[2].Boundary));
    }

    public static TheoryData<SqlDialect, string, TransactionIsolation> Isolations => new()
    {
        { Pg, "BEGIN", TransactionIsolation.Default },
        { Pg, "BEGIN ISOLATION LEVEL SERIALIZABLE", TransactionIsolation.Serializable },
        { Pg, "START TRANSACTION READ ONLY, ISOLATION LEVEL REPEATABLE READ", TransactionIsolation.RepeatableRead },
        { Pg, "BEGIN TRANSACTION ISOLATION LEVEL READ COMMITTED", TransactionIsolation.ReadCommitted },
        { Pg, "BEGIN; SET TRANSACTION ISOLATION LEVEL READ UNCOMMITTED", TransactionIsolation.ReadUncommitted },
        { My, "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", TransactionIsolation.Serializable },
        { My, "START TRANSACTION", TransactionIsolation.Default },
    };

    [Theory]
    [MemberData(nameof(Isolations))]
    public void Classify_TransactionStart_ReportsIsolation(SqlDialect dialect, string sql, TransactionIsolation isolation)
    {
        Assert.Equal(isolation, Classify(sql, dialect).Isolation);
    }

    public static TheoryData<SqlDialect, string, TransactionBoundary> Boundaries => new()
    {
        { Pg, "SELECT 1", TransactionBoundary.None },
        { Pg, "BEGIN", TransactionBoundary.Opens },
        { Pg, "COMMIT", TransactionBoundary.Closes },
        { Pg, "END", TransactionBoundary.Closes },
        { Pg, "ABORT", TransactionBoundary.Closes },
        { Pg, "COMMIT AND CHAIN", TransactionBoundary.Opens },
        { Pg, "ROLLBACK TO SAVEPOINT a", TransactionBoundary.None },
        { Pg, "SAVEPOINT a", TransactionBoundary.None },
        { Pg, "PREPARE TRANSACTION 'x'", TransactionBoundary.Closes },
        { Pg, "BEGIN; INSERT INTO t VALUES (1); COMMIT", TransactionBoundary.Closes },
        { Pg, "COMMIT; BEGIN", TransactionBoundary.Opens },
        { Pg, "BEGIN; SELECT 1", TransactionBoundary.Opens },
        { My, "START TRANSACTION", TransactionBoundary.Opens },
        { My, "ROLLBACK", TransactionBoundary.Closes },
        { My, "ROLLBACK TO s", TransactionBoundary.None },
    };

    [Theory]
    [MemberData(nameof(Boundaries))]
    public void Classify_TransactionControl_ReportsLastBoundary(SqlDialect dialect, string sql, TransactionBoundary boundary)
    {
        Assert.Equal(boundary, Classify(sql, dialect).Boundary);
    }

    public static TheoryData<SqlDialect, string, bool> Unterminated => new()
    {
        { Pg, "SELECT 'abc", true },
        { Pg, "SELECT E'abc\\'", true },
        { Pg, "SELECT \"abc", true },
        { Pg, "SELECT $$abc", true },
        { Pg, "SELECT $x$abc$y$", true },
        { Pg, "SELECT 1 /* abc", true },
        { Pg, "/* /* */ SELECT 1", true },
        { Pg, "SELECT 'abc' /* ok */", false },
        { Pg, "SELECT $x$ $y$ $x$", false },
        { My, "SELECT `abc", true },
        { My, "SELECT 'abc\\'", true },
        { My, "SELECT 1 /*! abc", true },
        { My, "/* /* */ SELECT 1", false },
        { My, "SELECT 'abc'", false },
    };

    [Theory]
    [MemberData(nameof(Unterminated))]
    public void Classify_UnterminatedToken_IsFlagged(SqlDialect dialect, string sql, bool unterminated)
    {
        Assert.Equal(unterminated, Classify(sql, dialect).HasUnterminatedToken);
    }

    [Theory]
    [InlineData(true, StatementAccess.Write)]
    [InlineData(false, StatementAccess.Read)]
    public void Classify_StandardConformingStrings_DecidesWhetherBackslashEscapesAQuote(bool standard, StatementAccess access)
    {
        // With standard_conforming_strings off, 'a\' FOR UPDATE' is one string; with it on, FOR UPDATE is code.
        var rules = RoutingRules.Default with { StandardConformingStrings = standard };

        var info = Classify("SELECT 'a\\' FOR UPDATE'", Pg, rules);

        Assert.Equal(access, info.Access);
    }

    [Theory]
    [InlineData(false, StatementAccess.Read)]
    [InlineData(true, StatementAccess.Write)]
    public void Classify_MySqlNoBackslashEscapes_DecidesWhetherBackslashEscapesAQuote(bool noBackslashEscapes, StatementAccess access)
    {
        var rules = RoutingRules.Default with { MySqlNoBackslashEscapes = noBackslashEscapes };

        var info = Classify("SELECT 'a\\' FOR UPDATE -- '", My, rules);

        Assert.Equal(access, info.Access);
    }

    [Theory]
    [InlineData(false, StatementAccess.Read)]
    [InlineData(true, StatementAccess.Write)]
    public void Classify_MySqlAnsiQuotes_MakesDoubleQuotesAnIdentifier(bool ansiQuotes, StatementAccess access)
    {
        // Under ANSI_QUOTES "nextval" is a function name; otherwise a string.
        var rules = RoutingRules.Default with { MySqlAnsiQuotes = ansiQuotes, WriteFunctions = ["nextval"] };

        var info = Classify("SELECT \"nextval\"(1)", My, rules);

        Assert.Equal(access, info.Access);
    }

    [Theory]
    [InlineData("SELECT billing.allocate_id()", StatementAccess.Write)]
    [InlineData("SELECT BILLING.ALLOCATE_ID()", StatementAccess.Write)]
    [InlineData("SELECT allocate_id()", StatementAccess.Read)]
    [InlineData("SELECT other.allocate_id()", StatementAccess.Read)]
    [InlineData("SELECT bump(1)", StatementAccess.Write)]
    [InlineData("SELECT any_schema.Bump(1)", StatementAccess.Write)]
    [InlineData("SELECT nextval('s')", StatementAccess.Read)]
    public void Classify_ConfiguredWriteFunctions_ReplaceTheDefaults(string sql, StatementAccess access)
    {
        var rules = RoutingRules.Default with { WriteFunctions = ["billing.allocate_id", "bump"] };

        Assert.Equal(access, Classify(sql, Pg, rules).Access);
    }

    [Theory]
    [InlineData("")]
    [InlineData("has space")]
    [InlineData(".leading")]
    [InlineData("trailing.")]
    [InlineData("a.b.c")]
    [InlineData("semi;colon")]
    public void RoutingRules_InvalidWriteFunctionName_Throws(string name)
    {
        Assert.Throws<ArgumentException>(() => RoutingRules.Default with { WriteFunctions = [name] });
    }

    [Fact]
    public void RoutingRules_Default_ListsTheRequiredWriteFunctions()
    {
        string[] required =
        [
            "nextval", "setval", "pg_advisory_lock", "pg_advisory_xact_lock", "pg_try_advisory_lock", "pg_advisory_unlock",
            "lo_create", "lo_import", "txid_current", "pg_current_xact_id", "set_config", "dblink_exec",
        ];

        Assert.All(required, name => Assert.Contains(name, RoutingRules.Default.WriteFunctions));
    }

    [Fact]
    public void Classify_Hints_AreCarriedInTheResult()
    {
        var info = Classify("/* mproxy: priority=low route=replica */ SELECT 1", Pg);

        Assert.Equal(MProxy.Abstractions.Priority.Low, info.Hints.Priority);
        Assert.Equal(RouteHint.Replica, info.Hints.Route);
    }

    [Theory]
    [InlineData(SqlDialect.PostgreSql, "SELECT * FROM t WHERE id = $1 AND name = 'x' FOR UPDATE")]
    [InlineData(SqlDialect.PostgreSql, "/* mproxy: priority=low timeout=5s route=replica */ WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d WHERE a IN (1, 2, 3)")]
    [InlineData(SqlDialect.PostgreSql, "BEGIN ISOLATION LEVEL SERIALIZABLE; SET search_path = a; PREPARE p AS SELECT 1; COMMIT")]
    [InlineData(SqlDialect.MySql, "SET autocommit = 0, @x := 1; SELECT GET_LOCK('x', 1) INTO @y; INSERT INTO t VALUES (1), (2)")]
    public void Classify_TextWithoutStringHints_DoesNotAllocate(SqlDialect dialect, string sql)
    {
        var bytes = Encoding.UTF8.GetBytes(sql);
        var rules = RoutingRules.Default;
        for (var i = 0; i < 10; i++)
            StatementClassifier.Classify(bytes, dialect, rules);

        // The least of a few rounds: the runtime itself may allocate on this thread once in a while
        // (tiered compilation swapping in optimized code: CI saw 7.5 KB in one round of 100 calls),
        // while an allocation of the classifier's would show in every round.
        var least = long.MaxValue;
        for (var round = 0; round < 5; round++)
        {
            var before = GC.GetAllocatedBytesForCurrentThread();
            for (var i = 0; i < 100; i++)
                StatementClassifier.Classify(bytes, dialect, rules);
            least = Math.Min(least, GC.GetAllocatedBytesForCurrentThread() - before);
        }

        Assert.Equal(0, least);
    }

    [Fact]
    public void Classify_GroupHint_AllocatesOnlyForTheHintStrings()
    {
        // The control for the test above: the measurement does see allocations.
        var bytes = Encoding.UTF8.GetBytes("/* mproxy: group=batch */ SELECT 1");
        StatementClassifier.Classify(bytes, Pg, RoutingRules.Default);

        var before = GC.GetAllocatedBytesForCurrentThread();
        var info = StatementClassifier.Classify(bytes, Pg, RoutingRules.Default);
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.Equal("batch", info.Hints.ResourceGroup);
        Assert.InRange(allocated, 1, 64);
    }

    public static TheoryData<SqlDialect, string> Tricky => new()
    {
        { Pg, "SELECT E'a\\'b' || $q$x$q$ /* /* */ */ -- c\n FROM \"t\"\"x\" WHERE a::int = $1 FOR UPDATE; BEGIN READ ONLY" },
        { Pg, "WITH x AS (INSERT INTO t VALUES (1) RETURNING *) SELECT * INTO TEMP y FROM x; EXPLAIN (ANALYZE) DELETE FROM t" },
        { Pg, "CREATE FUNCTION f() BEGIN ATOMIC SELECT CASE WHEN 1 THEN 2 END; END; DECLARE c CURSOR WITH HOLD FOR SELECT 1" },
        { Pg, "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY; COMMIT AND CHAIN; PREPARE TRANSACTION 'x'" },
        { My, "SET @@session.autocommit = 0, @x := `a``b`; SELECT /*!50000 'x\\'y' */ INTO @z # c\n; LOCK TABLES t READ" },
        { My, "CREATE PROCEDURE p() BEGIN IF 1 THEN SELECT 1; END IF; END; DROP PREPARE s; /*M! SELECT 0x1F */" },
    };

    [Theory]
    [MemberData(nameof(Tricky))]
    public void Classify_EveryPrefixOfTrickyText_NeitherThrowsNorHangs(SqlDialect dialect, string sql)
    {
        var bytes = Encoding.UTF8.GetBytes(sql);
        for (var length = 0; length <= bytes.Length; length++)
        {
            var prefix = bytes.AsSpan(0, length);
            var info = StatementClassifier.Classify(prefix, dialect, RoutingRules.Default);
            Assert.InRange(info.StatementCount, 0, length);
            Fingerprinter.Render(prefix, dialect, RoutingRules.Default);
        }
    }

    [Fact]
    public void Classify_ArbitraryBytes_NeitherThrowsNorHangs()
    {
        var random = new Random(20240601);
        var alphabet = "'\"`$-/*#;()[],.:=?@\\ \nEeUu&x0159aSELECTFORUPDATEBEGIN"u8.ToArray();
        var buffer = new byte[64];
        for (var i = 0; i < 2000; i++)
        {
            var length = random.Next(buffer.Length);
            for (var j = 0; j < length; j++)
                buffer[j] = random.Next(8) == 0 ? (byte)random.Next(256) : alphabet[random.Next(alphabet.Length)];
            foreach (var dialect in new[] { Pg, My })
            {
                var info = StatementClassifier.Classify(buffer.AsSpan(0, length), dialect, RoutingRules.Default);
                Assert.InRange(info.StatementCount, 0, length);
            }
        }
    }

    [Theory]
    [InlineData("SELECT abalance FROM pgbench_accounts WHERE aid = 42;", false)]
    [InlineData("UPDATE t SET x = x + 1 WHERE id = 7", false)]
    [InlineData("BEGIN; INSERT INTO deeds VALUES (1); COMMIT", false)]
    [InlineData("PREPARE q AS SELECT 1", true)]
    [InlineData("  execute q(1)", true)]
    [InlineData("/* c */ DeAllocate ALL", true)]
    [InlineData("discard all", true)]
    [InlineData("SELECT 1; PREPARE q AS SELECT 2", true)]
    [InlineData("SELECT 'prepared'", true)]   // a maybe: only Classify knows it is a literal
    [InlineData("SELECT unprepared, re_execute, $executed FROM predeallocate", false)] // inside words: never a command
    [InlineData("SELECT 1;execute q(1)", true)]
    [InlineData("/*c*/prepare q AS SELECT 1", true)]
    [InlineData("-- c\nDISCARD ALL", true)]
    [InlineData("SELECT delta, dis, d FROM e, p WHERE di = 'x' -- d", false)] // words that start like one, and texts that end in an initial
    [InlineData("SELECT 1; Discard all", true)]
    public void MayHavePreparedStatementCommand_IsFalseOnlyWhenNoneOfTheWordsStartsAWord(string sql, bool expected)
    {
        var bytes = System.Text.Encoding.UTF8.GetBytes(sql);
        Assert.Equal(expected, StatementClassifier.MayHavePreparedStatementCommand(bytes));
        // Never a false "no" for a text the classifier finds such a command in.
        var info = StatementClassifier.Classify(bytes, SqlDialect.PostgreSql, RoutingRules.Default);
        var effects = SessionEffects.Prepare | SessionEffects.Execute | SessionEffects.Deallocate | SessionEffects.Discard;
        if ((info.Session & effects) != 0)
            Assert.True(StatementClassifier.MayHavePreparedStatementCommand(bytes));
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void MayHavePreparedStatementCommand_SixteenBytesAtATime_AnswersAsTheByteAtATimeSearch(int seed)
    {
        // Texts of every length around the vector width, with the words (and the bytes that decide
        // whether they start a word) at every offset, block boundaries and the overlapping last block included.
        string[] pieces = ["prepare", "EXECUTE", "deallocate", "Discard", "pre", "exec", "d", "e", "p", "x", "1", "_", "$", "é", "@", "[", "`", "{",
            "/", ";", " ", "\n", "(", "'", "pgbench_accounts", "UPDATE", "WHERE", "abalance"];
        var random = new Random(seed);
        var yes = 0;
        for (var i = 0; i < 20000; i++)
        {
            var text = new System.Text.StringBuilder();
            var length = random.Next(0, 70);
            while (text.Length < length)
                text.Append(pieces[random.Next(pieces.Length)]);
            var bytes = System.Text.Encoding.UTF8.GetBytes(text.ToString());
            var expected = StatementClassifier.MayHavePreparedStatementCommandScalar(bytes);
            Assert.True(expected == StatementClassifier.MayHavePreparedStatementCommand(bytes), text.ToString());
            yes += expected ? 1 : 0;
        }
        Assert.InRange(yes, 2000, 18000); // both answers come up often
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void MayHavePreparedStatementCommand_RandomTexts_NeverNoWhereClassifyFindsACommand(int seed)
    {
        string[] pieces = ["prepare", "EXECUTE", "deallocate", "discard", "q", "all", "select", "1", "_", "$", "é", "x", "'", "\"", "$$",
            ";", " ", "\n", "/*", "*/", "--", "(", ")", ","];
        var random = new Random(seed);
        var effects = SessionEffects.Prepare | SessionEffects.Execute | SessionEffects.Deallocate | SessionEffects.Discard;
        var found = 0;
        for (var i = 0; i < 3000; i++)
        {
            var text = string.Concat(Enumerable.Range(0, random.Next(1, 12)).Select(_ => pieces[random.Next(pieces.Length)]));
            var bytes = System.Text.Encoding.UTF8.GetBytes(text);
            var info = StatementClassifier.Classify(bytes, SqlDialect.PostgreSql, RoutingRules.Default);
            if ((info.Session & effects) == 0)
                continue;
            found++;
            Assert.True(StatementClassifier.MayHavePreparedStatementCommand(bytes), text);
        }
        Assert.True(found > 100, $"only {found} texts held a command"); // the generator must exercise the invariant
    }
}
