using System.Text;
using MProxy.Edge.Routing;
using S = MProxy.Edge.Routing.SessionEffects;
using T = MProxy.Edge.Routing.TransactionEffects;

namespace MProxy.Edge.Tests.Routing;

/// <summary>PostgreSQL statements with their expected access, transaction control and session effects.</summary>
public sealed class PostgresClassificationTests
{
    private const StatementAccess N = StatementAccess.Neutral;
    private const StatementAccess R = StatementAccess.Read;
    private const StatementAccess W = StatementAccess.Write;

    public static TheoryData<string, StatementAccess, TransactionEffects, SessionEffects> Statements => new()
    {
        // Plain reads.
        { "SELECT 1", R, T.None, S.None },
        { "select * from users where id = $1", R, T.None, S.None },
        { "  \n SELECT 1  ", R, T.None, S.None },
        { "VALUES (1, 2), (3, 4)", R, T.None, S.None },
        { "TABLE users", R, T.None, S.None },
        { "SHOW search_path", R, T.None, S.None },
        { "SHOW ALL", R, T.None, S.None },
        { "SELECT now(), current_user", R, T.None, S.None },
        { "SELECT count(*) FROM t WHERE a IN (SELECT b FROM u)", R, T.None, S.None },
        { "SELECT currval('s'), lastval()", R, T.None, S.None },
        { "SELECT * FROM t ORDER BY a LIMIT 10 OFFSET 5", R, T.None, S.None },
        { "SELECT substring(name FROM 1 FOR 3) FROM t", R, T.None, S.None },
        { "SELECT a FROM t WHERE b = -1", R, T.None, S.None },
        { "SELECT * FROM t WHERE nextval = 1", R, T.None, S.None },
        { "SELECT my_nextval('s')", R, T.None, S.None },
        { "SELECT a.nextval FROM a", R, T.None, S.None },
        { "(SELECT 1) UNION (SELECT 2)", R, T.None, S.None },
        { "((SELECT 1))", R, T.None, S.None },
        { "SELECT 1 UNION ALL SELECT 2 EXCEPT SELECT 3", R, T.None, S.None },

        // EXPLAIN: only ANALYZE runs the statement.
        { "EXPLAIN SELECT * FROM t", R, T.None, S.None },
        { "EXPLAIN DELETE FROM t", R, T.None, S.None },
        { "EXPLAIN SELECT nextval('s')", R, T.None, S.None },
        { "EXPLAIN ANALYZE SELECT 1", R, T.None, S.None },
        { "EXPLAIN ANALYZE DELETE FROM t", W, T.None, S.None },
        { "explain analyse delete from t", W, T.None, S.None },
        { "EXPLAIN ANALYZE VERBOSE INSERT INTO t VALUES (1)", W, T.None, S.None },
        { "EXPLAIN (ANALYZE, BUFFERS) UPDATE t SET a = 1", W, T.None, S.None },
        { "EXPLAIN (ANALYZE true, FORMAT JSON) UPDATE t SET a = 1", W, T.None, S.None },
        { "EXPLAIN (ANALYZE false) DELETE FROM t", R, T.None, S.None },
        { "EXPLAIN (ANALYZE off) DELETE FROM t", R, T.None, S.None },
        { "EXPLAIN (FORMAT JSON) INSERT INTO t VALUES (1)", R, T.None, S.None },
        { "EXPLAIN VERBOSE SELECT 1", R, T.None, S.None },
        { "EXPLAIN ANALYZE SELECT * FROM t FOR UPDATE", W, T.None, S.None },

        // WITH.
        { "WITH x AS (SELECT 1) SELECT * FROM x", R, T.None, S.None },
        { "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 10) SELECT * FROM r", R, T.None, S.None },
        { "WITH x AS (SELECT (SELECT max(a) FROM (SELECT a FROM t) s) AS m) SELECT m FROM x", R, T.None, S.None },
        { "WITH a AS (WITH b AS (SELECT 1) SELECT * FROM b) SELECT * FROM a", R, T.None, S.None },
        { "WITH x AS NOT MATERIALIZED (SELECT 1), y AS (SELECT 2) SELECT * FROM x, y", R, T.None, S.None },
        { "WITH d AS (DELETE FROM t WHERE a = 1 RETURNING *) SELECT * FROM d", W, T.None, S.None },
        { "WITH u AS (UPDATE t SET a = 1 RETURNING a), v AS (SELECT 1) SELECT * FROM u, v", W, T.None, S.None },
        { "WITH v AS (SELECT 1), u AS (UPDATE t SET a = (SELECT 1) RETURNING a) SELECT * FROM u, v", W, T.None, S.None },
        { "WITH i AS MATERIALIZED (INSERT INTO t VALUES (1) RETURNING id) SELECT id FROM i", W, T.None, S.None },
        { "WITH x(a) AS (SELECT 1) INSERT INTO t SELECT a FROM x", W, T.None, S.None },
        { "WITH x AS (SELECT 1) UPDATE t SET a = (SELECT * FROM x)", W, T.None, S.None },
        { "WITH x AS (SELECT 1) DELETE FROM t USING x", W, T.None, S.None },
        { "WITH m AS (MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE RETURNING t.id) SELECT * FROM m", W, T.None, S.None },
        { "WITH a AS (SELECT 1) SELECT * FROM (WITH b AS (DELETE FROM t RETURNING 1) SELECT * FROM b) s", W, T.None, S.None },

        // Locking clauses, at any depth and after subqueries.
        { "SELECT * FROM t FOR UPDATE", W, T.None, S.None },
        { "SELECT * FROM t FOR NO KEY UPDATE", W, T.None, S.None },
        { "SELECT * FROM t FOR SHARE", W, T.None, S.None },
        { "SELECT * FROM t FOR KEY SHARE SKIP LOCKED", W, T.None, S.None },
        { "SELECT * FROM t WHERE id IN (SELECT id FROM u WHERE x > (SELECT 1)) FOR UPDATE OF t NOWAIT", W, T.None, S.None },
        { "SELECT * FROM (SELECT * FROM t FOR UPDATE) s", W, T.None, S.None },
        { "WITH x AS (SELECT * FROM t FOR UPDATE) SELECT * FROM x", W, T.None, S.None },
        { "SELECT * FROM t /* FOR UPDATE */", R, T.None, S.None },

        // SELECT INTO creates a table.
        { "SELECT * INTO new_t FROM t", W, T.None, S.None },
        { "SELECT a, b INTO TEMP tmp FROM t", W, T.None, S.TemporaryObject },
        { "SELECT a INTO TEMPORARY TABLE tmp FROM t", W, T.None, S.TemporaryObject },
        { "SELECT array(SELECT 1) AS into_col", R, T.None, S.None },

        // Write functions, qualified or not, in any case.
        { "SELECT nextval('s')", W, T.None, S.None },
        { "SELECT pg_catalog.nextval('s')", W, T.None, S.None },
        { "SELECT NEXTVAL('s')", W, T.None, S.None },
        { "select \"nextval\"('s')", W, T.None, S.None },
        { "SELECT id, nextval('s') FROM t", W, T.None, S.None },
        { "SELECT coalesce(max(a), nextval('s')) FROM t", W, T.None, S.None },
        { "SELECT setval('s', 10)", W, T.None, S.None },
        { "SELECT pg_advisory_lock(42)", W, T.None, S.AdvisoryLock },
        { "SELECT pg_try_advisory_lock(1, 2)", W, T.None, S.AdvisoryLock },
        { "SELECT pg_advisory_lock_shared(1), pg_advisory_xact_lock(2)", W, T.None, S.AdvisoryLock },
        { "SELECT pg_advisory_xact_lock(1)", W, T.None, S.None },
        { "SELECT pg_advisory_unlock(42)", W, T.None, S.None },
        { "SELECT txid_current()", W, T.None, S.None },
        { "SELECT pg_current_xact_id()", W, T.None, S.None },
        { "SELECT set_config('search_path', 'a', false)", W, T.None, S.SetParameter },
        { "SELECT lo_create(0)", W, T.None, S.None },
        { "SELECT lo_import('/tmp/f')", W, T.None, S.None },
        { "SELECT dblink_exec('dbname=x', 'DELETE FROM t')", W, T.None, S.None },

        // Keywords hidden in strings, dollar quotes, quoted identifiers and comments.
        { "SELECT 'FOR UPDATE'", R, T.None, S.None },
        { "SELECT 'it''s FOR UPDATE'", R, T.None, S.None },
        { "SELECT E'\\' FOR UPDATE'", R, T.None, S.None },
        { "SELECT 'a\\' FOR UPDATE", W, T.None, S.None },
        { "SELECT $$ ; DELETE $$", R, T.None, S.None },
        { "SELECT $tag$ DELETE FROM t; $notag$ $tag$", R, T.None, S.None },
        { "SELECT $a$ nextval('s') $a$", R, T.None, S.None },
        { "SELECT \"update\" FROM t", R, T.None, S.None },
        { "SELECT a AS \"insert\", b AS \"FOR\" FROM \"delete\"", R, T.None, S.None },
        { "SELECT \"a\"\"FOR UPDATE\" FROM t", R, T.None, S.None },
        { "/* DELETE FROM t */ SELECT 1", R, T.None, S.None },
        { "/* outer /* nested */ DELETE FROM t; */ SELECT 1", R, T.None, S.None },
        { "-- DROP TABLE t\nSELECT 1", R, T.None, S.None },
        { "SELECT 1 -- ; DELETE FROM t", R, T.None, S.None },
        { "SELECT 1--1 FOR UPDATE", R, T.None, S.None },
        { "SELECT 1 /* ; */ ; /* DELETE */", R, T.None, S.None },

        // COPY, cursors.
        { "COPY t TO STDOUT", R, T.None, S.None },
        { "COPY (SELECT * FROM t WHERE a IN (SELECT 1)) TO STDOUT WITH (FORMAT csv)", R, T.None, S.None },
        { "COPY t FROM STDIN", W, T.None, S.None },
        { "COPY t (a, b) FROM '/tmp/f' WITH (FORMAT csv)", W, T.None, S.None },
        { "COPY (DELETE FROM t RETURNING *) TO STDOUT", W, T.None, S.None },
        { "FETCH 10 FROM c", N, T.None, S.None },
        { "MOVE NEXT IN c", N, T.None, S.None },
        { "CLOSE c", N, T.None, S.None },

        // Writes.
        { "INSERT INTO t VALUES (1)", W, T.None, S.None },
        { "insert into t (a) values ($1) returning id", W, T.None, S.None },
        { "UPDATE t SET a = 1 WHERE id = 2", W, T.None, S.None },
        { "DELETE FROM t", W, T.None, S.None },
        { "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET a = s.a", W, T.None, S.None },
        { "CREATE TABLE t (id int)", W, T.None, S.None },
        { "CREATE INDEX CONCURRENTLY i ON t (a)", W, T.None, S.None },
        { "ALTER TABLE t ADD COLUMN b int", W, T.None, S.None },
        { "DROP TABLE t", W, T.None, S.None },
        { "TRUNCATE t", W, T.None, S.None },
        { "GRANT SELECT ON t TO bob", W, T.None, S.None },
        { "REVOKE ALL ON t FROM bob", W, T.None, S.None },
        { "CALL proc(1)", W, T.None, S.None },
        { "DO $$ BEGIN PERFORM 1; END $$", W, T.None, S.None },
        { "LOCK TABLE t IN ACCESS EXCLUSIVE MODE", W, T.None, S.None },
        { "VACUUM ANALYZE t", W, T.None, S.None },
        { "ANALYZE t", W, T.None, S.None },
        { "NOTIFY ch, 'x'", W, T.None, S.None },
        { "REFRESH MATERIALIZED VIEW v", W, T.None, S.None },
        { "CHECKPOINT", W, T.None, S.None },
        { "frobnicate the database", W, T.None, S.None },
        { "123", W, T.None, S.None },
        { "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT CASE WHEN true THEN 2 END; END", W, T.None, S.None },

        // Transaction control.
        { "BEGIN", W, T.Begin, S.None },
        { "begin work", W, T.Begin, S.None },
        { "BEGIN READ ONLY", R, T.Begin | T.ReadOnly, S.None },
        { "BEGIN TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ ONLY, DEFERRABLE", R, T.Begin | T.ReadOnly, S.None },
        { "BEGIN ISOLATION LEVEL READ COMMITTED READ WRITE", W, T.Begin | T.ReadWrite, S.None },
        { "START TRANSACTION", W, T.Begin, S.None },
        { "START TRANSACTION READ ONLY", R, T.Begin | T.ReadOnly, S.None },
        { "/* leading */ BEGIN", W, T.Begin, S.None },
        { "-- comment\nBEGIN READ ONLY", R, T.Begin | T.ReadOnly, S.None },
        { "/* a */ /* b */ -- c\n  START TRANSACTION", W, T.Begin, S.None },
        { "COMMIT", N, T.Commit, S.None },
        { "COMMIT WORK", N, T.Commit, S.None },
        { "END", N, T.Commit, S.None },
        { "END TRANSACTION", N, T.Commit, S.None },
        { "COMMIT AND CHAIN", N, T.Commit | T.Chain | T.Begin, S.None },
        { "COMMIT AND NO CHAIN", N, T.Commit, S.None },
        { "ROLLBACK", N, T.Rollback, S.None },
        { "ABORT", N, T.Rollback, S.None },
        { "ROLLBACK AND CHAIN", N, T.Rollback | T.Chain | T.Begin, S.None },
        { "ROLLBACK TO SAVEPOINT sp", N, T.RollbackToSavepoint, S.None },
        { "ROLLBACK TRANSACTION TO sp", N, T.RollbackToSavepoint, S.None },
        { "SAVEPOINT sp", N, T.Savepoint, S.None },
        { "RELEASE SAVEPOINT sp", N, T.ReleaseSavepoint, S.None },
        { "RELEASE sp", N, T.ReleaseSavepoint, S.None },
        { "PREPARE TRANSACTION 'gid1'", W, T.PrepareTransaction, S.None },
        { "COMMIT PREPARED 'gid1'", W, T.CommitPrepared, S.None },
        { "ROLLBACK PREPARED 'gid1'", W, T.RollbackPrepared, S.None },
        { "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ", N, T.SetCharacteristics, S.None },
        { "SET TRANSACTION READ ONLY", N, T.SetCharacteristics | T.ReadOnly, S.None },

        // Session state.
        { "SET search_path TO app", W, T.None, S.SetParameter },
        { "SET statement_timeout = 5000", W, T.None, S.SetParameter },
        { "SET SESSION search_path = app", W, T.None, S.SetParameter },
        { "SET TIME ZONE 'UTC'", W, T.None, S.SetParameter },
        { "SET ROLE admin", W, T.None, S.SetParameter },
        { "SET SESSION AUTHORIZATION bob", W, T.None, S.SetParameter },
        { "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY", W, T.None, S.SetParameter },
        { "SET LOCAL statement_timeout = 5000", N, T.None, S.None },
        { "SET LOCAL search_path TO app", N, T.None, S.None },
        { "SET CONSTRAINTS ALL DEFERRED", N, T.None, S.None },
        { "RESET search_path", W, T.None, S.ResetParameter },
        { "RESET ALL", W, T.None, S.ResetParameter },
        { "PREPARE q AS SELECT * FROM t WHERE id = $1", W, T.None, S.Prepare },
        { "PREPARE q (int) AS SELECT pg_advisory_lock($1)", W, T.None, S.Prepare },
        { "PREPARE transaction AS SELECT 1", W, T.None, S.Prepare },
        { "EXECUTE q(1)", W, T.None, S.Execute },
        { "DEALLOCATE q", W, T.None, S.Deallocate },
        { "DEALLOCATE PREPARE q", W, T.None, S.Deallocate },
        { "DEALLOCATE ALL", W, T.None, S.Deallocate | S.DeallocateAll },
        { "DISCARD ALL", W, T.None, S.Discard },
        { "DISCARD PLANS", W, T.None, S.Discard },
        { "DISCARD TEMP", W, T.None, S.Discard },
        { "DISCARD SEQUENCES", W, T.None, S.Discard },
        { "LISTEN ch", W, T.None, S.Listen },
        { "UNLISTEN *", W, T.None, S.Unlisten },
        { "CREATE TEMP TABLE tmp (a int)", W, T.None, S.TemporaryObject },
        { "CREATE TEMPORARY TABLE tmp AS SELECT 1", W, T.None, S.TemporaryObject },
        { "CREATE GLOBAL TEMPORARY TABLE tmp (a int)", W, T.None, S.TemporaryObject },
        { "CREATE OR REPLACE TEMP VIEW v AS SELECT 1", W, T.None, S.TemporaryObject },
        { "CREATE TEMP RECURSIVE VIEW v (n) AS SELECT 1", W, T.None, S.TemporaryObject },
        { "CREATE TEMP SEQUENCE s", W, T.None, S.TemporaryObject },
        { "CREATE TABLE temp (a int)", W, T.None, S.None },
        { "CREATE UNLOGGED TABLE u (a int)", W, T.None, S.None },
        { "DECLARE c CURSOR WITH HOLD FOR SELECT * FROM t", R, T.None, S.HoldableCursor },
        { "DECLARE c BINARY SCROLL CURSOR WITH HOLD FOR SELECT 1", R, T.None, S.HoldableCursor },
        { "DECLARE c CURSOR FOR SELECT * FROM t", R, T.None, S.None },
        { "DECLARE c NO SCROLL CURSOR WITHOUT HOLD FOR SELECT * FROM t FOR UPDATE", W, T.None, S.None },
        { "DECLARE c CURSOR WITH HOLD FOR SELECT pg_advisory_lock(1)", W, T.None, S.HoldableCursor | S.AdvisoryLock },
        { "LOAD 'auto_explain'", W, T.None, S.Load },

        // Several statements: a read only if every one is.
        { "SELECT 1; SELECT 2", R, T.None, S.None },
        { "SELECT 1; DELETE FROM t", W, T.None, S.None },
        { "DELETE FROM t; SELECT 1", W, T.None, S.None },
        { "BEGIN; UPDATE t SET a = 1; COMMIT", W, T.Begin | T.Commit, S.None },
        { "BEGIN READ ONLY; SELECT 1; COMMIT;", R, T.Begin | T.ReadOnly | T.Commit, S.None },
        { "SET search_path = a; SELECT 1", W, T.None, S.SetParameter },
        { "SELECT 1;;;", R, T.None, S.None },
        { "LISTEN a; PREPARE p AS SELECT 1; SELECT pg_advisory_lock(1)", W, T.None, S.Listen | S.Prepare | S.AdvisoryLock },

        // Empty and unterminated.
        { "", N, T.None, S.None },
        { "   \n\t ", N, T.None, S.None },
        { ";", N, T.None, S.None },
        { "/* only a comment */", N, T.None, S.None },
        { "SELECT 'abc", R, T.None, S.None },
        { "SELECT 1 /* DELETE", R, T.None, S.None },
        { "SELECT $$ abc", R, T.None, S.None },
        { "SELECT \"abc", R, T.None, S.None },
        { "DELETE FROM t WHERE a = 'x", W, T.None, S.None },
        { "SELECT (1", R, T.None, S.None },
        { "SELECT 1)) FOR UPDATE", W, T.None, S.None },
    };

    [Theory]
    [MemberData(nameof(Statements))]
    public void Classify_PostgresStatement_MatchesExpectedEffects(string sql, StatementAccess access, TransactionEffects transaction, SessionEffects session)
    {
        var info = StatementClassifier.Classify(Encoding.UTF8.GetBytes(sql), SqlDialect.PostgreSql, RoutingRules.Default);

        Assert.Equal((access, transaction, session), (info.Access, info.Transaction, info.Session));
        Assert.Equal(access != StatementAccess.Write, info.IsRead);
    }

    public static TheoryData<string, StatementKind> Kinds => new()
    {
        { "", StatementKind.Empty },
        { "SELECT 1", StatementKind.Select },
        { "(SELECT 1)", StatementKind.Select },
        { "WITH x AS (SELECT 1) SELECT 1", StatementKind.With },
        { "VALUES (1)", StatementKind.Values },
        { "TABLE t", StatementKind.Table },
        { "SHOW x", StatementKind.Show },
        { "EXPLAIN ANALYZE DELETE FROM t", StatementKind.Explain },
        { "INSERT INTO t VALUES (1); SELECT 1", StatementKind.Insert },
        { "-- c\nUPDATE t SET a = 1", StatementKind.Update },
        { "END", StatementKind.Commit },
        { "ABORT", StatementKind.Rollback },
        { "START TRANSACTION", StatementKind.Begin },
        { "ROLLBACK TO sp", StatementKind.Rollback },
        { "PREPARE TRANSACTION 'x'", StatementKind.Prepare },
        { "DECLARE c CURSOR FOR SELECT 1", StatementKind.Declare },
        { "SET LOCAL a = 1", StatementKind.Set },
        { "COPY t FROM STDIN", StatementKind.Copy },
        { "foo", StatementKind.Unknown },
    };

    [Theory]
    [MemberData(nameof(Kinds))]
    public void Classify_PostgresStatement_ReportsFirstKind(string sql, StatementKind kind)
    {
        var info = StatementClassifier.Classify(Encoding.UTF8.GetBytes(sql), SqlDialect.PostgreSql, RoutingRules.Default);

        Assert.Equal(kind, info.Kind);
    }
}
