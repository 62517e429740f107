using System.Text;
using MProxy.Edge.Routing;

namespace MProxy.Edge.Tests.Routing;

public sealed class FingerprinterTests
{
    private const SqlDialect Pg = SqlDialect.PostgreSql;
    private const SqlDialect My = SqlDialect.MySql;

    private static ulong Id(string sql, SqlDialect dialect) =>
        Fingerprinter.Compute(Encoding.UTF8.GetBytes(sql), dialect, RoutingRules.Default);

    private static string Render(string sql, SqlDialect dialect) =>
        Fingerprinter.Render(Encoding.UTF8.GetBytes(sql), dialect, RoutingRules.Default);

    public static TheoryData<SqlDialect, string, string> SameShape => new()
    {
        { Pg, "SELECT * FROM t WHERE id = 1", "select *  from T\n where ID = 42" },
        { Pg, "SELECT * FROM t WHERE name = 'bob'", "SELECT * FROM t WHERE name = 'alice'" },
        { Pg, "SELECT * FROM t WHERE name = 'bob'", "SELECT * FROM t WHERE name = E'al\\'ice'" },
        { Pg, "SELECT * FROM t WHERE id = $1", "SELECT * FROM t WHERE id = 7" },
        { Pg, "SELECT * FROM t WHERE a = -1", "SELECT * FROM t WHERE a = 5" },
        { Pg, "SELECT * FROM t WHERE a = 1.5e3", "SELECT * FROM t WHERE a = +2" },
        { Pg, "SELECT * FROM t WHERE a IN (1, 2, 3)", "SELECT * FROM t WHERE a IN (4)" },
        { Pg, "SELECT * FROM t WHERE a IN ($1, $2)", "SELECT * FROM t WHERE a IN (1, 2, 3, 4, 5)" },
        { Pg, "SELECT * FROM t WHERE a IN ('x', 'y')", "SELECT * FROM t WHERE a IN ($1)" },
        { Pg, "SELECT * FROM t WHERE a NOT IN (-1, 2)", "SELECT * FROM t WHERE a NOT IN (3)" },
        { Pg, "SELECT * FROM t WHERE a IN ('a'::text, 'b'::text)", "SELECT * FROM t WHERE a IN ('c')" },
        { Pg, "SELECT * FROM t WHERE a = ANY(ARRAY[1, 2, 3])", "SELECT * FROM t WHERE a = ANY(ARRAY[4])" },
        { Pg, "INSERT INTO t (a, b) VALUES (1, 'x')", "INSERT INTO t (a, b) VALUES (2, 'y'), (3, 'z'), (4, 'w')" },
        { Pg, "INSERT INTO t VALUES (1, 2) RETURNING id", "INSERT INTO t VALUES (3, 4), (5, 6) RETURNING id" },
        { Pg, "SELECT * FROM (VALUES (1), (2)) v(a)", "SELECT * FROM (VALUES (3)) v(a)" },
        { Pg, "/* mproxy: priority=low */ SELECT 1", "SELECT 2 -- trailing" },
        { Pg, "SELECT /* a */ 1 /* b */", "SELECT 1" },
        { Pg, "SELECT 1;", "SELECT 1" },
        { Pg, "SELECT \"users\".id FROM users", "SELECT users.id FROM \"users\"" },
        { Pg, "SELECT 'a'\n'b'", "SELECT 'c'" },
        { Pg, "SELECT * FROM t WHERE d > '2020-01-01'::date", "SELECT * FROM t WHERE d > '2021-02-02'::DATE" },
        { Pg, "SELECT $tag$x$tag$", "SELECT 'y'" },
        { Pg, "SELECT * FROM t LIMIT 10 OFFSET 20", "SELECT * FROM t LIMIT 1 OFFSET 0" },
        { My, "SELECT * FROM t WHERE a IN (?, ?, ?)", "SELECT * FROM t WHERE a IN (1)" },
        { My, "SELECT * FROM t WHERE a = ?", "SELECT * FROM t WHERE a = \"x\"" },
        { My, "SELECT * FROM `Users`", "select * from users" },
        { My, "INSERT INTO t VALUES (1), (2)", "INSERT INTO t VALUES (3)" },
        { My, "VALUES ROW(1, 2), ROW(3, 4)", "VALUES ROW(5, 6)" },
        { My, "# c\nSELECT 1", "SELECT 2" },
        { My, "SELECT @X := 1", "SELECT @x := 2" },
        { My, "SELECT `Order Id` FROM t", "SELECT `order id` FROM t" },
    };

    [Theory]
    [MemberData(nameof(SameShape))]
    public void Compute_QueriesDifferingOnlyInConstantsOrLayout_ShareId(SqlDialect dialect, string a, string b)
    {
        Assert.Equal(Render(a, dialect), Render(b, dialect));
        Assert.Equal(Id(a, dialect), Id(b, dialect));
    }

    public static TheoryData<SqlDialect, string, string> DifferentShape => new()
    {
        { Pg, "SELECT a FROM t", "SELECT b FROM t" },
        { Pg, "SELECT * FROM t WHERE a = 1", "SELECT * FROM t WHERE a > 1" },
        { Pg, "SELECT * FROM \"Users\"", "SELECT * FROM users" },
        { Pg, "SELECT * FROM \"Users\"", "SELECT * FROM \"USERS\"" },
        { Pg, "SELECT * FROM t WHERE a IN (1, 2)", "SELECT * FROM t WHERE a IN (SELECT b FROM u)" },
        { Pg, "SELECT * FROM t WHERE a IN (1, 2)", "SELECT * FROM t WHERE a IN (1, b)" },
        { Pg, "SELECT * FROM t WHERE a IS NULL", "SELECT * FROM t WHERE a = 1" },
        { Pg, "SELECT true", "SELECT false" },
        { Pg, "SELECT a - 1 FROM t", "SELECT a + 1 FROM t" },
        { Pg, "SELECT 1; SELECT 2", "SELECT 1" },
        { Pg, "SELECT ab FROM t", "SELECT a b FROM t" },
        { Pg, "INSERT INTO t (a) VALUES (1)", "INSERT INTO t (a, b) VALUES (1, 2)" },
        { Pg, "SELECT * FROM t FOR UPDATE", "SELECT * FROM t" },
        { Pg, "SELECT * FROM t WHERE a = $1", "SELECT * FROM t WHERE a = b" },
        { My, "SELECT @a", "SELECT @b" },
        { My, "SELECT `a b` FROM t", "SELECT a b FROM t" },
        { My, "SELECT * FROM t WHERE a = ?", "SELECT * FROM t WHERE a = b" },
    };

    [Theory]
    [MemberData(nameof(DifferentShape))]
    public void Compute_DifferentShapes_HaveDifferentIds(SqlDialect dialect, string a, string b)
    {
        Assert.NotEqual(Id(a, dialect), Id(b, dialect));
    }

    public static TheoryData<SqlDialect, string, string> Rendered => new()
    {
        { Pg, "SELECT * FROM users WHERE id = 42", "select * from users where id = ?" },
        { Pg, "SELECT a, b FROM t WHERE x IN (1, 2, 3) AND y = 'z'", "select a, b from t where x in (?) and y = ?" },
        { Pg, "INSERT INTO t (a, b) VALUES (1, 'x'), (2, 'y') RETURNING id", "insert into t(a, b) values (?, ?) returning id" },
        { Pg, "SELECT count(*) FROM t GROUP BY a", "select count(*) from t group by a" },
        { Pg, "/* mproxy: priority=low */ SELECT \"Name\" FROM s.t -- c", "select \"Name\" from s.t" },
        { Pg, "SELECT '2020-01-01'::date, a[1:2]", "select ?::date, a[?:?]" },
        { Pg, "SELECT 1; SELECT 2;", "select ?; select ?" },
        { Pg, "SELECT * FROM t WHERE a = -5 AND b = ANY(ARRAY[1, 2])", "select * from t where a = ? and b = any(array[?])" },
        { Pg, "SELECT * FROM t WHERE a IS NOT NULL AND b = true", "select * from t where a is not null and b = true" },
        { Pg, "UPDATE t SET a = a - 1 WHERE id = $3", "update t set a = a - ? where id = ?" },
        { My, "SELECT * FROM `Orders` WHERE id IN (?, ?) LIMIT 10", "select * from orders where id in (?) limit ?" },
        { My, "SELECT @x := 1, @@session.sql_mode", "select @x := ?, @@session.sql_mode" },
        { My, "INSERT INTO t VALUES ROW(1, 2), ROW(3, 4)", "insert into t values row(?, ?)" },
        { My, "SELECT `Order Id`, `Total` FROM `Orders`", "select `order id`, total from orders" },
        { Pg, "", "" },
    };

    [Theory]
    [MemberData(nameof(Rendered))]
    public void Render_Query_ProducesNormalizedText(SqlDialect dialect, string sql, string normalized)
    {
        Assert.Equal(normalized, Render(sql, dialect));
    }

    public static TheoryData<SqlDialect, string, ulong> Golden => new()
    {
        { Pg, "", 0xcbf29ce484222325 },
        { Pg, "SELECT 1", 6816584400461019731 },
        { Pg, "SELECT * FROM users WHERE id = $1", 10529048360070972232 },
        { Pg, "INSERT INTO t (a, b) VALUES (1, 'x'), (2, 'y')", 11677289146274135658 },
        { Pg, "SELECT * FROM \"Users\" WHERE a IN (1, 2, 3)", 6872362061046678789 },
        { My, "SELECT * FROM t WHERE a = ? LIMIT 10", 13390394751266971217 },
    };

    [Theory]
    [MemberData(nameof(Golden))]
    public void Compute_KnownQueries_KeepTheirPinnedIds(SqlDialect dialect, string sql, ulong id)
    {
        // These ids are stored in telemetry and grain keys: a change here is a breaking change.
        Assert.Equal(id, Id(sql, dialect));
    }

    [Fact]
    public void Compute_Id_IsFnv1aOverKindLengthAndBytesOfEachNormalizedToken()
    {
        // "SELECT x FROM t WHERE a = 42" normalizes to: select x from t where a = ?
        (byte Kind, string Bytes)[] pieces =
        [
            (1, "select"), (1, "x"), (1, "from"), (1, "t"), (1, "where"), (1, "a"), (4, "="), (3, ""),
        ];
        var expected = 0xcbf29ce484222325UL;
        foreach (var (kind, text) in pieces)
        {
            var bytes = new List<byte> { kind };
            bytes.AddRange(BitConverter.GetBytes(text.Length)); // little-endian on every supported platform
            bytes.AddRange(Encoding.ASCII.GetBytes(text));
            foreach (var b in bytes)
                expected = (expected ^ b) * 1099511628211UL;
        }

        Assert.Equal(expected, Id("SELECT x FROM T WHERE a = 42", Pg));
    }

    [Theory]
    [InlineData("", 0xcbf29ce484222325)]
    [InlineData("a", 0xaf63dc4c8601ec8c)]
    [InlineData("foobar", 0x85944171f73967e8)]
    public void Fnv1a64_PublishedTestVectors_Match(string input, ulong expected)
    {
        var hash = Fnv1a64.OffsetBasis;
        foreach (var b in Encoding.ASCII.GetBytes(input))
            hash = Fnv1a64.Append(hash, b);

        Assert.Equal(expected, hash);
    }

    [Fact]
    public void Classify_Fingerprint_EqualsCompute()
    {
        var sql = Encoding.UTF8.GetBytes("SELECT * FROM t WHERE a IN (1, 2) /* mproxy: priority=low */");

        var info = StatementClassifier.Classify(sql, Pg, RoutingRules.Default);

        Assert.Equal(Fingerprinter.Compute(sql, Pg, RoutingRules.Default), info.Fingerprint);
    }

    [Fact]
    public void Compute_SameTextInOtherDialect_CanDiffer()
    {
        // '#' starts a comment in MySQL only.
        Assert.NotEqual(Id("SELECT a # b", Pg), Id("SELECT a # b", My));
        Assert.Equal(Id("SELECT a # b", My), Id("SELECT a", My));
    }

    [Fact]
    public void Compute_Query_DoesNotAllocate()
    {
        var sql = Encoding.UTF8.GetBytes("SELECT * FROM \"T\" WHERE a IN (1, 2, 3) AND b = ANY(ARRAY['x']); INSERT INTO t VALUES (1, -2), (3, 4)");
        Fingerprinter.Compute(sql, Pg, RoutingRules.Default);

        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 100; i++)
            Fingerprinter.Compute(sql, Pg, RoutingRules.Default);

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }
}
