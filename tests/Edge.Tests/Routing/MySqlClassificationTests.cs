using System.Text;
using MProxy.Edge.Routing;
using S = MProxy.Edge.Routing.SessionEffects;
using T = MProxy.Edge.Routing.TransactionEffects;

namespace MProxy.Edge.Tests.Routing;

/// <summary>MySQL / MariaDB statements with their expected access, transaction control and session effects.</summary>
public sealed class MySqlClassificationTests
{
    private const StatementAccess N = StatementAccess.Neutral;
    private const StatementAccess R = StatementAccess.Read;
    private const StatementAccess W = StatementAccess.Write;

    public static TheoryData<string, StatementAccess, TransactionEffects, SessionEffects> Statements => new()
    {
        // Reads.
        { "SELECT 1", R, T.None, S.None },
        { "SELECT * FROM t WHERE a = ? AND b = ?", R, T.None, S.None },
        { "SHOW TABLES", R, T.None, S.None },
        { "SHOW VARIABLES LIKE 'x'", R, T.None, S.None },
        { "DESCRIBE t", R, T.None, S.None },
        { "DESC t", R, T.None, S.None },
        { "EXPLAIN SELECT * FROM t", R, T.None, S.None },
        { "EXPLAIN t", R, T.None, S.None },
        { "EXPLAIN FORMAT=JSON DELETE FROM t", R, T.None, S.None },
        { "EXPLAIN ANALYZE SELECT * FROM t", R, T.None, S.None },
        { "EXPLAIN ANALYZE FORMAT=TREE UPDATE t SET a = 1", W, T.None, S.None },
        { "TABLE t", R, T.None, S.None },
        { "VALUES ROW(1, 2), ROW(3, 4)", R, T.None, S.None },
        { "WITH x AS (SELECT 1) SELECT * FROM x", R, T.None, S.None },
        { "SELECT @x", R, T.None, S.None },
        { "SELECT @@session.sql_mode, @@version", R, T.None, S.None },
        { "SELECT IS_FREE_LOCK('x'), LAST_INSERT_ID()", R, T.None, S.None },
        { "SELECT 0x1F, b'101', X'FF', 1e10, .5", R, T.None, S.None },
        { "SELECT N'DELETE', _utf8mb4'x' COLLATE utf8mb4_bin", R, T.None, S.None },
        { "SELECT REPLACE(a, 'x', 'y') FROM t", R, T.None, S.None },
        { "SELECT (REPLACE(a, 'x', 'y')) FROM t", R, T.None, S.None },
        { "SELECT * FROM t LIMIT 10, 20", R, T.None, S.None },

        // Keywords hidden in strings, identifiers and comments.
        { "SELECT 'FOR UPDATE'", R, T.None, S.None },
        { "SELECT \"DELETE FROM t\"", R, T.None, S.None },
        { "SELECT 'it\\'s FOR UPDATE'", R, T.None, S.None },
        { "SELECT 'it''s FOR UPDATE'", R, T.None, S.None },
        { "SELECT \"say \\\"FOR UPDATE\\\"\"", R, T.None, S.None },
        { "SELECT `update`, `for` FROM `delete`", R, T.None, S.None },
        { "SELECT `a``FOR UPDATE` FROM t", R, T.None, S.None },
        { "# DELETE FROM t\nSELECT 1", R, T.None, S.None },
        { "-- DELETE FROM t\nSELECT 1", R, T.None, S.None },
        { "/* DELETE FROM t */ SELECT 1", R, T.None, S.None },
        { "/* /* not nested */ SELECT 1", R, T.None, S.None },
        { "SELECT /*+ MAX_EXECUTION_TIME(1000) */ * FROM t", R, T.None, S.None },
        { "SELECT 1--1 FOR UPDATE", W, T.None, S.None },

        // Executable comments are code.
        { "SELECT /*! SQL_NO_CACHE */ * FROM t", R, T.None, S.None },
        { "SELECT 1 /*! FOR UPDATE */", W, T.None, S.None },
        { "/*!40101 SET NAMES utf8mb4 */", W, T.None, S.SetParameter },
        { "/*M!100108 SET @x = 1 */", W, T.None, S.UserVariable },
        { "SELECT 1 /*!50000 ; DELETE FROM t */", W, T.None, S.None },

        // Locking reads and SELECT INTO.
        { "SELECT * FROM t FOR UPDATE", W, T.None, S.None },
        { "SELECT * FROM t FOR SHARE", W, T.None, S.None },
        { "SELECT * FROM t LOCK IN SHARE MODE", W, T.None, S.None },
        { "SELECT * FROM t WHERE a IN (SELECT a FROM u) FOR UPDATE SKIP LOCKED", W, T.None, S.None },
        { "SELECT a INTO @x FROM t", R, T.None, S.UserVariable },
        { "SELECT a, b FROM t INTO @x, @y", R, T.None, S.UserVariable },
        { "SELECT @x := a FROM t", R, T.None, S.UserVariable },
        { "SELECT @x = a FROM t", R, T.None, S.None },
        { "SELECT * FROM t INTO OUTFILE '/tmp/x'", W, T.None, S.None },
        { "SELECT a FROM t INTO DUMPFILE '/tmp/x'", W, T.None, S.None },

        // Functions.
        { "SELECT GET_LOCK('x', 10)", W, T.None, S.NamedLock },
        { "SELECT RELEASE_LOCK('x')", W, T.None, S.None },
        { "DO GET_LOCK('x', 0)", W, T.None, S.NamedLock },

        // Writes.
        { "INSERT INTO t VALUES (1)", W, T.None, S.None },
        { "INSERT INTO t VALUES (1) ON DUPLICATE KEY UPDATE a = VALUES(a)", W, T.None, S.None },
        { "REPLACE INTO t VALUES (1)", W, T.None, S.None },
        { "UPDATE t SET a = 1", W, T.None, S.None },
        { "DELETE FROM t", W, T.None, S.None },
        { "LOAD DATA INFILE 'x' INTO TABLE t", W, T.None, S.None },
        { "CREATE TABLE t (id int)", W, T.None, S.None },
        { "DROP TEMPORARY TABLE tmp", W, T.None, S.None },
        { "CALL p()", W, T.None, S.None },
        { "DO SLEEP(1)", W, T.None, S.None },
        { "ANALYZE TABLE t", W, T.None, S.None },
        { "HANDLER t OPEN", W, T.None, S.None },
        { "XA START 'x'", W, T.None, S.None },
        { "CREATE PROCEDURE p() BEGIN SELECT 1; IF 1 THEN SELECT 2; END IF; END", W, T.None, S.None },
        { "BEGIN NOT ATOMIC SELECT 1; END", W, T.None, S.None },

        // Transaction control.
        { "START TRANSACTION", W, T.Begin, S.None },
        { "START TRANSACTION READ ONLY", R, T.Begin | T.ReadOnly, S.None },
        { "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ WRITE", W, T.Begin | T.ReadWrite, S.None },
        { "BEGIN", W, T.Begin, S.None },
        { "BEGIN WORK", W, T.Begin, S.None },
        { "/* c */ BEGIN", W, T.Begin, S.None },
        { "COMMIT", N, T.Commit, S.None },
        { "COMMIT WORK AND NO CHAIN NO RELEASE", N, T.Commit, S.None },
        { "COMMIT AND CHAIN", N, T.Commit | T.Chain | T.Begin, S.None },
        { "ROLLBACK", N, T.Rollback, S.None },
        { "ROLLBACK TO SAVEPOINT s1", N, T.RollbackToSavepoint, S.None },
        { "ROLLBACK WORK TO s1", N, T.RollbackToSavepoint, S.None },
        { "SAVEPOINT s1", N, T.Savepoint, S.None },
        { "RELEASE SAVEPOINT s1", N, T.ReleaseSavepoint, S.None },
        { "SET TRANSACTION ISOLATION LEVEL READ COMMITTED", N, T.SetCharacteristics, S.None },
        { "SET TRANSACTION READ ONLY", N, T.SetCharacteristics | T.ReadOnly, S.None },
        { "SET autocommit = 0", W, T.AutocommitOff, S.SetParameter },
        { "SET autocommit=1", W, T.AutocommitOn, S.SetParameter },
        { "SET AUTOCOMMIT = OFF", W, T.AutocommitOff, S.SetParameter },
        { "SET @@autocommit = 0", W, T.AutocommitOff, S.SetParameter },
        { "SET SESSION autocommit = ON", W, T.AutocommitOn, S.SetParameter },
        { "SET @@session.autocommit = 0", W, T.AutocommitOff, S.SetParameter },
        { "SET SESSION TRANSACTION READ ONLY", W, T.None, S.SetParameter },
        { "SET GLOBAL TRANSACTION ISOLATION LEVEL SERIALIZABLE", W, T.None, S.None },

        // Session state.
        { "SET NAMES utf8mb4", W, T.None, S.SetParameter },
        { "SET NAMES 'utf8mb4' COLLATE 'utf8mb4_bin'", W, T.None, S.SetParameter },
        { "SET CHARACTER SET utf8", W, T.None, S.SetParameter },
        { "SET @x = 1", W, T.None, S.UserVariable },
        { "SET @x := 1, @y = 2", W, T.None, S.UserVariable },
        { "SET SESSION sql_mode = 'ANSI'", W, T.None, S.SetParameter },
        { "SET @@session.sql_mode = ''", W, T.None, S.SetParameter },
        { "SET sql_mode = '', @x = 1", W, T.None, S.SetParameter | S.UserVariable },
        { "SET GLOBAL max_connections = 100", W, T.None, S.None },
        { "SET @@global.max_connections = 100", W, T.None, S.None },
        { "SET PERSIST max_connections = 100", W, T.None, S.None },
        { "SET GLOBAL max_connections = 100, SESSION wait_timeout = 5", W, T.None, S.SetParameter },
        { "SET @lock = GET_LOCK('a', 0)", W, T.None, S.UserVariable | S.NamedLock },
        { "SET @x = (SELECT IF(a, 1, 2) FROM t), sql_mode = ''", W, T.None, S.UserVariable | S.SetParameter },
        { "CREATE TEMPORARY TABLE tmp (id int)", W, T.None, S.TemporaryObject },
        { "PREPARE stmt FROM 'SELECT ?'", W, T.None, S.Prepare },
        { "EXECUTE stmt USING @a", W, T.None, S.Execute },
        { "DEALLOCATE PREPARE stmt", W, T.None, S.Deallocate },
        { "DROP PREPARE stmt", W, T.None, S.Deallocate },
        { "LOCK TABLES t READ, u WRITE", W, T.None, S.TableLock },
        { "LOCK TABLE t WRITE", W, T.None, S.TableLock },
        { "UNLOCK TABLES", W, T.None, S.UnlockTables },
        { "USE shop", W, T.None, S.UseDatabase },
        { "USE `my-db`", W, T.None, S.UseDatabase },

        // Several statements, empty and unterminated texts.
        { "SELECT 1; SELECT 2", R, T.None, S.None },
        { "SELECT 1; INSERT INTO t VALUES (1)", W, T.None, S.None },
        { "START TRANSACTION; UPDATE t SET a = 1; COMMIT", W, T.Begin | T.Commit, S.None },
        { "SET autocommit = 0; SELECT 1", W, T.AutocommitOff, S.SetParameter },
        { "", N, T.None, S.None },
        { "# only a comment", N, T.None, S.None },
        { "SELECT 'abc", R, T.None, S.None },
        { "SELECT `abc", R, T.None, S.None },
        { "SELECT 1 /*! FOR UPDATE", W, T.None, S.None },
    };

    [Theory]
    [MemberData(nameof(Statements))]
    public void Classify_MySqlStatement_MatchesExpectedEffects(string sql, StatementAccess access, TransactionEffects transaction, SessionEffects session)
    {
        var info = StatementClassifier.Classify(Encoding.UTF8.GetBytes(sql), SqlDialect.MySql, RoutingRules.Default);

        Assert.Equal((access, transaction, session), (info.Access, info.Transaction, info.Session));
    }

    public static TheoryData<string, StatementKind> Kinds => new()
    {
        { "SELECT 1", StatementKind.Select },
        { "DESCRIBE t", StatementKind.Describe },
        { "DESC t", StatementKind.Describe },
        { "REPLACE INTO t VALUES (1)", StatementKind.Replace },
        { "DROP PREPARE s", StatementKind.Deallocate },
        { "DROP TABLE t", StatementKind.Drop },
        { "LOCK TABLES t READ", StatementKind.Lock },
        { "UNLOCK TABLES", StatementKind.Unlock },
        { "USE db", StatementKind.Use },
        { "XA COMMIT 'x'", StatementKind.Xa },
        { "BEGIN", StatementKind.Begin },
        { "START SLAVE", StatementKind.Unknown },
        { "/*!40101 SET NAMES utf8 */", StatementKind.Set },
    };

    [Theory]
    [MemberData(nameof(Kinds))]
    public void Classify_MySqlStatement_ReportsFirstKind(string sql, StatementKind kind)
    {
        var info = StatementClassifier.Classify(Encoding.UTF8.GetBytes(sql), SqlDialect.MySql, RoutingRules.Default);

        Assert.Equal(kind, info.Kind);
    }
}
