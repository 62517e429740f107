using System.Text;

namespace MProxy.Edge.Routing;

/// <summary>What one statement does; filled by <see cref="StatementAnalyzer"/>.</summary>
internal struct StatementFacts
{
    public StatementKind Kind;
    public StatementAccess Access;
    public TransactionEffects Transaction;
    public TransactionIsolation Isolation;
    public TransactionBoundary Boundary;
    public SessionEffects Session;
    public TextRange Name;
    public int Start;
    public int End;

    public readonly SqlStatement ToStatement() => new()
    {
        Kind = Kind,
        Access = Access,
        Transaction = Transaction,
        Isolation = Isolation,
        Boundary = Boundary,
        Session = Session,
        StatementName = Name,
        Text = new TextRange(Start, End - Start),
    };

    public void MarkWrite() => Access = StatementAccess.Write;
}

/// <summary>What the scan of a statement's remaining tokens looks for.</summary>
[Flags]
internal enum ScanMode : byte
{
    /// <summary>Function calls (write functions, session locks) and MySQL variable assignments.</summary>
    None = 0,

    /// <summary>Also what turns a query into a write: locking clauses, data-modifying WITH, SELECT … INTO.</summary>
    Query = 1,

    /// <summary>COPY: FROM at the top level (or a data-modifying query in parentheses) makes it a write.</summary>
    Copy = 2,

    /// <summary>CREATE: a BEGIN ATOMIC … END (PostgreSQL) or BEGIN … END (MySQL) body holds semicolons that do not end the statement.</summary>
    Compound = 4,

    /// <summary>Consume to the end of the statement and look at nothing (functions that are not run: EXPLAIN, PREPARE bodies).</summary>
    Skip = 8,
}

/// <summary>
/// Classifies one statement from its first token, consuming tokens up to and including the
/// semicolon that ends it (a semicolon inside parentheses or inside a BEGIN … END body does not).
/// A recursive-descent reading of just the prefixes that matter, then a linear scan of the rest.
/// </summary>
internal static class StatementAnalyzer
{
    private const int MaxTrackedDepth = 63;

    public static void Analyze(ref TokenCursor c, in SqlToken head, RoutingRules rules, ref StatementFacts f)
    {
        f.Start = head.Start;
        f.End = head.End;
        var pg = c.Dialect == SqlDialect.PostgreSql;
        if (head.Kind == SqlTokenKind.LeftParen)
        {
            f.Kind = ParenthesizedKind(c);
            Query(ref c, head, rules, ref f);
            if (f.Kind == StatementKind.Unknown)
                f.MarkWrite();
            return;
        }
        if (head.Kind != SqlTokenKind.Word)
        {
            Write(ref c, StatementKind.Unknown, rules, ref f);
            return;
        }
        switch (head.Keyword)
        {
            case SqlKeyword.Select:
                f.Kind = StatementKind.Select;
                Query(ref c, head, rules, ref f);
                return;
            case SqlKeyword.Values:
                f.Kind = StatementKind.Values;
                Query(ref c, head, rules, ref f);
                return;
            case SqlKeyword.Table:
                f.Kind = StatementKind.Table;
                Query(ref c, head, rules, ref f);
                return;
            case SqlKeyword.With:
                f.Kind = StatementKind.With;
                Query(ref c, head, rules, ref f);
                return;
            case SqlKeyword.Show:
                f.Kind = StatementKind.Show;
                f.Access = StatementAccess.Read;
                ScanRest(ref c, rules, ref f, ScanMode.Skip);
                return;
            case SqlKeyword.Explain:
                Explain(ref c, StatementKind.Explain, rules, ref f);
                return;
            case SqlKeyword.Describe or SqlKeyword.Desc when !pg:
                Explain(ref c, StatementKind.Describe, rules, ref f);
                return;
            case SqlKeyword.Insert:
                Write(ref c, StatementKind.Insert, rules, ref f);
                return;
            case SqlKeyword.Update:
                Write(ref c, StatementKind.Update, rules, ref f);
                return;
            case SqlKeyword.Delete:
                Write(ref c, StatementKind.Delete, rules, ref f);
                return;
            case SqlKeyword.Merge:
                Write(ref c, StatementKind.Merge, rules, ref f);
                return;
            case SqlKeyword.Replace when !pg:
                Write(ref c, StatementKind.Replace, rules, ref f);
                return;
            case SqlKeyword.Create:
                Create(ref c, rules, ref f);
                return;
            case SqlKeyword.Alter:
                Write(ref c, StatementKind.Alter, rules, ref f);
                return;
            case SqlKeyword.Drop:
                if (!pg && c.TryAccept(SqlKeyword.Prepare))
                    Deallocate(ref c, rules, ref f);
                else
                    Write(ref c, StatementKind.Drop, rules, ref f);
                return;
            case SqlKeyword.Truncate:
                Write(ref c, StatementKind.Truncate, rules, ref f);
                return;
            case SqlKeyword.Grant:
                Write(ref c, StatementKind.Grant, rules, ref f);
                return;
            case SqlKeyword.Revoke:
                Write(ref c, StatementKind.Revoke, rules, ref f);
                return;
            case SqlKeyword.Call:
                Write(ref c, StatementKind.Call, rules, ref f);
                return;
            case SqlKeyword.Do:
                Write(ref c, StatementKind.Do, rules, ref f);
                return;
            case SqlKeyword.Copy when pg:
                f.Kind = StatementKind.Copy;
                f.Access = StatementAccess.Read;
                ScanRest(ref c, rules, ref f, ScanMode.Copy);
                return;
            case SqlKeyword.Vacuum:
                Write(ref c, StatementKind.Vacuum, rules, ref f);
                return;
            case SqlKeyword.Analyze or SqlKeyword.Analyse:
                Write(ref c, StatementKind.Analyze, rules, ref f);
                return;
            case SqlKeyword.Notify when pg:
                Write(ref c, StatementKind.Notify, rules, ref f);
                return;
            case SqlKeyword.Lock:
                if (!pg && (c.TryAccept(SqlKeyword.Tables) || c.TryAccept(SqlKeyword.Table)))
                    f.Session |= SessionEffects.TableLock;
                Write(ref c, StatementKind.Lock, rules, ref f);
                return;
            case SqlKeyword.Unlock when !pg:
                f.Session |= SessionEffects.UnlockTables;
                Write(ref c, StatementKind.Unlock, rules, ref f);
                return;
            case SqlKeyword.Begin:
                Begin(ref c, rules, ref f);
                return;
            case SqlKeyword.Start:
                if (c.TryAccept(SqlKeyword.Transaction))
                {
                    f.Kind = StatementKind.Begin;
                    StartTransaction(ref c, rules, ref f);
                }
                else
                {
                    Write(ref c, StatementKind.Unknown, rules, ref f);
                }
                return;
            case SqlKeyword.Commit:
                Commit(ref c, rules, ref f);
                return;
            case SqlKeyword.End when pg:
                f.Kind = StatementKind.Commit;
                SkipWorkOrTransaction(ref c, pg);
                EndTransaction(ref c, TransactionEffects.Commit, rules, ref f);
                return;
            case SqlKeyword.Rollback:
                Rollback(ref c, rules, ref f);
                return;
            case SqlKeyword.Abort when pg:
                f.Kind = StatementKind.Rollback;
                SkipWorkOrTransaction(ref c, pg);
                EndTransaction(ref c, TransactionEffects.Rollback, rules, ref f);
                return;
            case SqlKeyword.Savepoint:
                f.Kind = StatementKind.Savepoint;
                f.Transaction |= TransactionEffects.Savepoint;
                ScanRest(ref c, rules, ref f, ScanMode.Skip);
                return;
            case SqlKeyword.Release:
                f.Kind = StatementKind.Release;
                c.TryAccept(SqlKeyword.Savepoint);
                f.Transaction |= TransactionEffects.ReleaseSavepoint;
                ScanRest(ref c, rules, ref f, ScanMode.Skip);
                return;
            case SqlKeyword.Prepare:
                Prepare(ref c, pg, rules, ref f);
                return;
            case SqlKeyword.Execute:
                CaptureName(ref c, ref f);
                f.Session |= SessionEffects.Execute;
                Write(ref c, StatementKind.Execute, rules, ref f);
                return;
            case SqlKeyword.Deallocate:
                c.TryAccept(SqlKeyword.Prepare);
                Deallocate(ref c, rules, ref f);
                return;
            case SqlKeyword.Discard when pg:
                f.Session |= SessionEffects.Discard;
                Write(ref c, StatementKind.Discard, rules, ref f);
                return;
            case SqlKeyword.Listen when pg:
                f.Session |= SessionEffects.Listen;
                Write(ref c, StatementKind.Listen, rules, ref f);
                return;
            case SqlKeyword.Unlisten when pg:
                f.Session |= SessionEffects.Unlisten;
                Write(ref c, StatementKind.Unlisten, rules, ref f);
                return;
            case SqlKeyword.Set:
                f.Kind = StatementKind.Set;
                if (pg)
                    PgSet(ref c, rules, ref f);
                else
                    MySqlSet(ref c, rules, ref f);
                return;
            case SqlKeyword.Reset:
                if (pg)
                    f.Session |= SessionEffects.ResetParameter;
                Write(ref c, StatementKind.Reset, rules, ref f);
                return;
            case SqlKeyword.Declare when pg:
                Declare(ref c, rules, ref f);
                return;
            case SqlKeyword.Fetch when pg:
                Neutral(ref c, StatementKind.Fetch, rules, ref f);
                return;
            case SqlKeyword.Move when pg:
                Neutral(ref c, StatementKind.Move, rules, ref f);
                return;
            case SqlKeyword.Close when pg:
                Neutral(ref c, StatementKind.Close, rules, ref f);
                return;
            case SqlKeyword.Load:
                if (pg)
                    f.Session |= SessionEffects.Load;
                Write(ref c, StatementKind.Load, rules, ref f);
                return;
            case SqlKeyword.Use when !pg:
                f.Session |= SessionEffects.UseDatabase;
                Write(ref c, StatementKind.Use, rules, ref f);
                return;
            case SqlKeyword.Xa when !pg:
                Write(ref c, StatementKind.Xa, rules, ref f);
                return;
            default:
                Write(ref c, StatementKind.Unknown, rules, ref f);
                return;
        }
    }

    // ------------------------------------------------------------------ statement families

    private static StatementKind ParenthesizedKind(TokenCursor probe)
    {
        while (probe.Next(out var token))
        {
            if (token.Kind == SqlTokenKind.LeftParen)
                continue;
            return token.Keyword switch
            {
                SqlKeyword.Select when token.Kind == SqlTokenKind.Word => StatementKind.Select,
                SqlKeyword.Values when token.Kind == SqlTokenKind.Word => StatementKind.Values,
                SqlKeyword.Table when token.Kind == SqlTokenKind.Word => StatementKind.Table,
                SqlKeyword.With when token.Kind == SqlTokenKind.Word => StatementKind.With,
                _ => StatementKind.Unknown,
            };
        }
        return StatementKind.Unknown;
    }

    private static void Query(ref TokenCursor c, in SqlToken head, RoutingRules rules, ref StatementFacts f)
    {
        f.Access = StatementAccess.Read;
        c.PushBack(head);
        ScanRest(ref c, rules, ref f, ScanMode.Query);
    }

    private static void Write(ref TokenCursor c, StatementKind kind, RoutingRules rules, ref StatementFacts f, ScanMode mode = ScanMode.None)
    {
        f.Kind = kind;
        f.MarkWrite();
        ScanRest(ref c, rules, ref f, mode);
    }

    private static void Neutral(ref TokenCursor c, StatementKind kind, RoutingRules rules, ref StatementFacts f)
    {
        f.Kind = kind;
        f.Access = StatementAccess.Neutral;
        ScanRest(ref c, rules, ref f, ScanMode.None);
    }

    // EXPLAIN [ANALYZE] [VERBOSE] stmt, EXPLAIN (option [value], …) stmt; MySQL EXPLAIN/DESCRIBE [ANALYZE] [FORMAT = x] stmt | table.
    // Without ANALYZE nothing runs: a read. With ANALYZE the statement runs: it decides.
    private static void Explain(ref TokenCursor c, StatementKind kind, RoutingRules rules, ref StatementFacts f)
    {
        f.Kind = kind;
        f.Access = StatementAccess.Read;
        var analyze = false;
        if (c.TryAccept(SqlTokenKind.LeftParen, out _))
        {
            var depth = 1;
            while (depth > 0 && c.Next(out var token))
            {
                f.End = token.End;
                if (token.Kind == SqlTokenKind.LeftParen)
                {
                    depth++;
                }
                else if (token.Kind == SqlTokenKind.RightParen)
                {
                    depth--;
                }
                else if (token.Kind == SqlTokenKind.Semicolon)
                {
                    return; // malformed: the statement ended inside the option list
                }
                else if (depth == 1 && (token.Is(SqlKeyword.Analyze) || token.Is(SqlKeyword.Analyse)))
                {
                    var value = c.Peek();
                    analyze = !(value.Is(SqlKeyword.False) || value.Is(SqlKeyword.Off)
                        || (value.Kind == SqlTokenKind.Number && value.Slice(c.Text).SequenceEqual("0"u8)));
                }
            }
        }
        else
        {
            while (true)
            {
                if (c.TryAccept(SqlKeyword.Analyze) || c.TryAccept(SqlKeyword.Analyse))
                {
                    analyze = true;
                }
                else if (c.TryAccept(SqlKeyword.Verbose))
                {
                }
                else if (c.Dialect == SqlDialect.MySql && c.TryAccept(SqlKeyword.Format))
                {
                    if (c.TryAccept(SqlTokenKind.Operator, out _))
                        c.TryAccept(SqlTokenKind.Word, out _);
                }
                else
                {
                    break;
                }
            }
        }
        if (!analyze)
        {
            ScanRest(ref c, rules, ref f, ScanMode.Skip);
            return;
        }
        Inner(ref c, rules, ref f);
    }

    // The statement that follows (EXPLAIN ANALYZE …, DECLARE … FOR …) decides read or write.
    private static void Inner(ref TokenCursor c, RoutingRules rules, ref StatementFacts f)
    {
        if (!c.Next(out var head) || head.Kind == SqlTokenKind.Semicolon)
            return;
        var inner = new StatementFacts();
        Analyze(ref c, head, rules, ref inner);
        f.Access = inner.Access == StatementAccess.Write ? StatementAccess.Write : StatementAccess.Read;
        f.Session |= inner.Session;
        f.End = inner.End;
    }

    // CREATE [OR REPLACE] [GLOBAL|LOCAL] [TEMP|TEMPORARY] [UNLOGGED] [RECURSIVE] {TABLE|VIEW|SEQUENCE} …
    private static void Create(ref TokenCursor c, RoutingRules rules, ref StatementFacts f)
    {
        var temporary = false;
        for (var i = 0; i < 6; i++)
        {
            var next = c.Peek();
            if (next.Is(SqlKeyword.Temp) || next.Is(SqlKeyword.Temporary))
                temporary = true;
            else if (!(next.Is(SqlKeyword.Or) || next.Is(SqlKeyword.Replace) || next.Is(SqlKeyword.Global) || next.Is(SqlKeyword.Local)
                || next.Is(SqlKeyword.Recursive) || (next.Kind == SqlTokenKind.Word && Ascii.EqualsIgnoreCase(next.Slice(c.Text), "unlogged"u8))))
                break;
            c.Next(out _);
        }
        if (temporary && (c.Peek().Is(SqlKeyword.Table) || c.Peek().Is(SqlKeyword.View) || c.Peek().Is(SqlKeyword.Sequence)))
            f.Session |= SessionEffects.TemporaryObject;
        Write(ref c, StatementKind.Create, rules, ref f, ScanMode.Compound);
    }

    // DECLARE name [BINARY] [ASENSITIVE|INSENSITIVE] [[NO] SCROLL] CURSOR [{WITH|WITHOUT} HOLD] FOR query
    private static void Declare(ref TokenCursor c, RoutingRules rules, ref StatementFacts f)
    {
        f.Kind = StatementKind.Declare;
        if (!c.TryAccept(SqlTokenKind.Word, out _))
            c.TryAccept(SqlTokenKind.QuotedIdentifier, out _);
        for (var i = 0; i < 6; i++)
        {
            var next = c.Peek();
            if (next.Kind != SqlTokenKind.Word || next.Is(SqlKeyword.For) || next.Is(SqlKeyword.With) || next.Is(SqlKeyword.Without))
                break;
            c.Next(out _);
            if (next.Is(SqlKeyword.Cursor))
                break;
        }
        if (c.TryAccept(SqlKeyword.With))
        {
            if (c.TryAccept(SqlKeyword.Hold))
                f.Session |= SessionEffects.HoldableCursor;
        }
        else if (c.TryAccept(SqlKeyword.Without))
        {
            c.TryAccept(SqlKeyword.Hold);
        }
        if (c.TryAccept(SqlKeyword.For))
        {
            f.Access = StatementAccess.Read;
            Inner(ref c, rules, ref f);
            return;
        }
        Write(ref c, StatementKind.Declare, rules, ref f);
    }

    // PostgreSQL: PREPARE name [(types)] AS stmt | PREPARE TRANSACTION 'gid'. MySQL: PREPARE name FROM …
    private static void Prepare(ref TokenCursor c, bool pg, RoutingRules rules, ref StatementFacts f)
    {
        f.Kind = StatementKind.Prepare;
        f.MarkWrite();
        if (pg && c.Peek().Is(SqlKeyword.Transaction))
        {
            c.Next(out var word);
            if (c.Peek().Kind == SqlTokenKind.String)
            {
                f.Transaction |= TransactionEffects.PrepareTransaction;
                f.Boundary = TransactionBoundary.Closes;
                ScanRest(ref c, rules, ref f, ScanMode.Skip);
                return;
            }
            f.Name = new TextRange(word.Start, word.Length); // a statement named "transaction"
        }
        else
        {
            CaptureName(ref c, ref f);
        }
        f.Session |= SessionEffects.Prepare;
        ScanRest(ref c, rules, ref f, ScanMode.Skip); // the body is not run now
    }

    // DEALLOCATE [PREPARE] name | ALL; MySQL DROP PREPARE name (the PREPARE word already taken).
    private static void Deallocate(ref TokenCursor c, RoutingRules rules, ref StatementFacts f)
    {
        f.Session |= SessionEffects.Deallocate;
        if (c.TryAccept(SqlKeyword.All))
            f.Session |= SessionEffects.DeallocateAll;
        else
            CaptureName(ref c, ref f);
        Write(ref c, StatementKind.Deallocate, rules, ref f, ScanMode.Skip);
    }

    private static void CaptureName(ref TokenCursor c, ref StatementFacts f)
    {
        var next = c.Peek();
        if (next.Kind is SqlTokenKind.Word or SqlTokenKind.QuotedIdentifier)
        {
            c.Next(out _);
            f.Name = new TextRange(next.Start, next.Length);
            f.End = next.End;
        }
    }

    // ------------------------------------------------------------------ transaction control

    private static void SkipWorkOrTransaction(ref TokenCursor c, bool pg)
    {
        if (!c.TryAccept(SqlKeyword.Work) && pg)
            c.TryAccept(SqlKeyword.Transaction);
    }

    // PostgreSQL BEGIN [WORK|TRANSACTION] [modes]; MySQL BEGIN [WORK]; MariaDB BEGIN NOT ATOMIC … END (a compound statement).
    private static void Begin(ref TokenCursor c, RoutingRules rules, ref StatementFacts f)
    {
        var pg = c.Dialect == SqlDialect.PostgreSql;
        if (!pg && c.Peek().Is(SqlKeyword.Not))
        {
            f.Kind = StatementKind.Unknown;
            f.MarkWrite();
            ScanRest(ref c, rules, ref f, ScanMode.Compound, compound: 1);
            return;
        }
        f.Kind = StatementKind.Begin;
        SkipWorkOrTransaction(ref c, pg);
        StartTransaction(ref c, rules, ref f);
    }

    // A transaction that may write must start where writes go; BEGIN READ ONLY may start on a replica.
    private static void StartTransaction(ref TokenCursor c, RoutingRules rules, ref StatementFacts f)
    {
        f.Transaction |= TransactionEffects.Begin;
        f.Boundary = TransactionBoundary.Opens;
        TransactionModes(ref c, ref f);
        f.Access = (f.Transaction & (TransactionEffects.ReadOnly | TransactionEffects.ReadWrite)) == TransactionEffects.ReadOnly
            ? StatementAccess.Read
            : StatementAccess.Write;
        ScanRest(ref c, rules, ref f, ScanMode.Skip);
    }

    private static void Commit(ref TokenCursor c, RoutingRules rules, ref StatementFacts f)
    {
        var pg = c.Dialect == SqlDialect.PostgreSql;
        f.Kind = StatementKind.Commit;
        if (pg && c.TryAccept(SqlKeyword.Prepared))
        {
            f.Transaction |= TransactionEffects.CommitPrepared;
            Write(ref c, StatementKind.Commit, rules, ref f, ScanMode.Skip);
            return;
        }
        SkipWorkOrTransaction(ref c, pg);
        EndTransaction(ref c, TransactionEffects.Commit, rules, ref f);
    }

    private static void Rollback(ref TokenCursor c, RoutingRules rules, ref StatementFacts f)
    {
        var pg = c.Dialect == SqlDialect.PostgreSql;
        f.Kind = StatementKind.Rollback;
        if (pg && c.TryAccept(SqlKeyword.Prepared))
        {
            f.Transaction |= TransactionEffects.RollbackPrepared;
            Write(ref c, StatementKind.Rollback, rules, ref f, ScanMode.Skip);
            return;
        }
        SkipWorkOrTransaction(ref c, pg);
        if (c.TryAccept(SqlKeyword.To))
        {
            c.TryAccept(SqlKeyword.Savepoint);
            f.Transaction |= TransactionEffects.RollbackToSavepoint;
            ScanRest(ref c, rules, ref f, ScanMode.Skip);
            return;
        }
        EndTransaction(ref c, TransactionEffects.Rollback, rules, ref f);
    }

    // … [AND [NO] CHAIN] (MySQL also [NO] RELEASE, left to the scan).
    private static void EndTransaction(ref TokenCursor c, TransactionEffects effect, RoutingRules rules, ref StatementFacts f)
    {
        f.Transaction |= effect;
        f.Boundary = TransactionBoundary.Closes;
        if (c.TryAccept(SqlKeyword.And))
        {
            var no = c.TryAccept(SqlKeyword.No);
            if (c.TryAccept(SqlKeyword.Chain) && !no)
            {
                f.Transaction |= TransactionEffects.Chain | TransactionEffects.Begin;
                f.Boundary = TransactionBoundary.Opens;
            }
        }
        ScanRest(ref c, rules, ref f, ScanMode.Skip);
    }

    // ISOLATION LEVEL …, READ ONLY, READ WRITE, [NOT] DEFERRABLE, WITH CONSISTENT SNAPSHOT, separated by commas or not.
    private static void TransactionModes(ref TokenCursor c, ref StatementFacts f)
    {
        while (true)
        {
            var next = c.Peek();
            if (next.Kind == SqlTokenKind.Comma)
            {
                c.Next(out _);
                continue;
            }
            if (next.Kind != SqlTokenKind.Word)
                return;
            c.Next(out _);
            if (next.Keyword == SqlKeyword.Read)
            {
                if (c.TryAccept(SqlKeyword.Only))
                    f.Transaction = (f.Transaction & ~TransactionEffects.ReadWrite) | TransactionEffects.ReadOnly;
                else if (c.TryAccept(SqlKeyword.Write))
                    f.Transaction = (f.Transaction & ~TransactionEffects.ReadOnly) | TransactionEffects.ReadWrite;
            }
            else if (next.Keyword == SqlKeyword.Isolation)
            {
                c.TryAccept(SqlKeyword.Level);
                var level = IsolationLevel(ref c);
                if (level != TransactionIsolation.Default)
                    f.Isolation = level;
            }
        }
    }

    private static TransactionIsolation IsolationLevel(ref TokenCursor c)
    {
        if (c.TryAccept(SqlKeyword.Serializable))
            return TransactionIsolation.Serializable;
        if (c.TryAccept(SqlKeyword.Repeatable))
        {
            c.TryAccept(SqlKeyword.Read);
            return TransactionIsolation.RepeatableRead;
        }
        if (c.TryAccept(SqlKeyword.Read))
        {
            if (c.TryAccept(SqlKeyword.Committed))
                return TransactionIsolation.ReadCommitted;
            if (c.TryAccept(SqlKeyword.Uncommitted))
                return TransactionIsolation.ReadUncommitted;
        }
        return TransactionIsolation.Default;
    }

    // ------------------------------------------------------------------ SET

    // SET LOCAL … / SET TRANSACTION … / SET CONSTRAINTS … last only as long as the transaction: neutral.
    // Any other SET (SET x, SET SESSION x, SET ROLE, SET SESSION AUTHORIZATION, SET SESSION CHARACTERISTICS) is session state.
    private static void PgSet(ref TokenCursor c, RoutingRules rules, ref StatementFacts f)
    {
        if (c.TryAccept(SqlKeyword.Local) || c.TryAccept(SqlKeyword.Constraints))
        {
            f.Access = StatementAccess.Neutral;
            ScanRest(ref c, rules, ref f, ScanMode.Skip);
            return;
        }
        if (c.TryAccept(SqlKeyword.Transaction))
        {
            f.Transaction |= TransactionEffects.SetCharacteristics;
            TransactionModes(ref c, ref f);
            f.Access = StatementAccess.Neutral;
            ScanRest(ref c, rules, ref f, ScanMode.Skip);
            return;
        }
        f.Session |= SessionEffects.SetParameter;
        f.MarkWrite();
        ScanRest(ref c, rules, ref f, ScanMode.None);
    }

    private enum SetPhase : byte
    {
        ItemStart,
        ScopeDot,
        ScopeName,
        Assign,
        Value,
        Rest,
    }

    // MySQL: SET TRANSACTION … (next transaction only: neutral); otherwise a comma-separated list of
    // [GLOBAL|SESSION|LOCAL|PERSIST|PERSIST_ONLY] name = value, @@[scope.]name = value, @user = value,
    // NAMES …, CHARACTER SET …, [scope] TRANSACTION …
    private static void MySqlSet(ref TokenCursor c, RoutingRules rules, ref StatementFacts f)
    {
        f.MarkWrite();
        if (c.TryAccept(SqlKeyword.Transaction))
        {
            f.Transaction |= TransactionEffects.SetCharacteristics;
            TransactionModes(ref c, ref f);
            f.Access = StatementAccess.Neutral;
            ScanRest(ref c, rules, ref f, ScanMode.Skip);
            return;
        }
        var text = c.Text;
        var scan = new ScanState(ScanMode.None, 0);
        var phase = SetPhase.ItemStart;
        var global = false;
        var autocommit = false;
        while (c.Next(out var token))
        {
            if (scan.Depth == 0 && token.Kind == SqlTokenKind.Semicolon)
                return;
            f.End = token.End;
            if (scan.Depth == 0 && token.Kind == SqlTokenKind.Comma)
            {
                phase = SetPhase.ItemStart;
                global = false;
                autocommit = false;
            }
            else
            {
                switch (phase)
                {
                    case SetPhase.ItemStart:
                        if (token.Is(SqlKeyword.Global) || token.Is(SqlKeyword.Persist) || token.Is(SqlKeyword.PersistOnly))
                        {
                            global = true;
                        }
                        else if (token.Is(SqlKeyword.Session) || token.Is(SqlKeyword.Local))
                        {
                        }
                        else if (token.Is(SqlKeyword.Transaction))
                        {
                            // SET SESSION|GLOBAL TRANSACTION: defaults for later transactions, not this one.
                            if (!global)
                                f.Session |= SessionEffects.SetParameter;
                            phase = SetPhase.Rest;
                        }
                        else if (token.Is(SqlKeyword.Names) || token.Is(SqlKeyword.Charset) || token.Is(SqlKeyword.Character))
                        {
                            f.Session |= SessionEffects.SetParameter;
                            phase = SetPhase.Rest;
                        }
                        else if (token.Kind == SqlTokenKind.Variable && (token.Flags & SqlTokenFlags.SystemVariable) != 0)
                        {
                            var name = token.Slice(text)[2..];
                            if (Ascii.EqualsIgnoreCase(name, "global"u8) || Ascii.EqualsIgnoreCase(name, "persist"u8) || Ascii.EqualsIgnoreCase(name, "persist_only"u8))
                            {
                                global = true;
                                phase = SetPhase.ScopeDot;
                            }
                            else if (Ascii.EqualsIgnoreCase(name, "session"u8) || Ascii.EqualsIgnoreCase(name, "local"u8))
                            {
                                phase = SetPhase.ScopeDot;
                            }
                            else
                            {
                                autocommit = SetTarget(name, global, ref f);
                                phase = SetPhase.Assign;
                            }
                        }
                        else if (token.Kind == SqlTokenKind.Variable)
                        {
                            f.Session |= SessionEffects.UserVariable;
                            phase = SetPhase.Assign;
                        }
                        else if (token.Kind is SqlTokenKind.Word or SqlTokenKind.QuotedIdentifier)
                        {
                            autocommit = SetTarget(token.Slice(text), global, ref f);
                            phase = SetPhase.Assign;
                        }
                        else
                        {
                            phase = SetPhase.Rest;
                        }
                        break;
                    case SetPhase.ScopeDot:
                        phase = token.Kind == SqlTokenKind.Dot ? SetPhase.ScopeName : SetPhase.Rest;
                        break;
                    case SetPhase.ScopeName:
                        autocommit = SetTarget(token.Slice(text), global, ref f);
                        phase = SetPhase.Assign;
                        break;
                    case SetPhase.Assign:
                        phase = token.Kind == SqlTokenKind.Operator && IsAssignment(token.Slice(text)) ? SetPhase.Value : SetPhase.Rest;
                        break;
                    case SetPhase.Value:
                        if (autocommit)
                            f.Transaction |= AutocommitValue(token, text);
                        phase = SetPhase.Rest;
                        break;
                }
            }
            Observe(ref c, rules, ref scan, token, ref f);
        }
    }

    private static bool SetTarget(ReadOnlySpan<byte> name, bool global, ref StatementFacts f)
    {
        if (!global)
            f.Session |= SessionEffects.SetParameter;
        return Ascii.EqualsIgnoreCase(name, "autocommit"u8) || Ascii.EqualsIgnoreCase(name, "`autocommit`"u8);
    }

    private static bool IsAssignment(ReadOnlySpan<byte> op) => op.SequenceEqual("="u8) || op.SequenceEqual(":="u8);

    private static TransactionEffects AutocommitValue(in SqlToken value, ReadOnlySpan<byte> text)
    {
        var raw = value.Slice(text);
        if (value.Is(SqlKeyword.Off) || value.Is(SqlKeyword.False) || (value.Kind == SqlTokenKind.Number && raw.SequenceEqual("0"u8)))
            return TransactionEffects.AutocommitOff;
        if (value.Is(SqlKeyword.On) || value.Is(SqlKeyword.True) || (value.Kind == SqlTokenKind.Number && raw.SequenceEqual("1"u8)))
            return TransactionEffects.AutocommitOn;
        return TransactionEffects.None;
    }

    // ------------------------------------------------------------------ the scan of the rest

    private struct ScanState(ScanMode mode, int compound)
    {
        public readonly ScanMode Mode = mode;
        public int Depth;
        public int Compound = compound;      // open BEGIN … END / CASE … END inside a routine body
        public ulong WithDepths;             // bit d: the group at paren depth d started with WITH
        public bool MainIsDml;               // a WITH's main statement at depth 0 is INSERT/UPDATE/DELETE/MERGE
        public SqlToken Prev;
        public SqlToken Prev2;
        public SqlToken Prev3;
    }

    private static void ScanRest(ref TokenCursor c, RoutingRules rules, ref StatementFacts f, ScanMode mode, int compound = 0)
    {
        var scan = new ScanState(mode, compound);
        while (c.Next(out var token))
        {
            if (token.Kind == SqlTokenKind.Semicolon && scan.Depth == 0 && scan.Compound == 0)
                return;
            f.End = token.End;
            Observe(ref c, rules, ref scan, token, ref f);
        }
    }

    private static void Observe(ref TokenCursor c, RoutingRules rules, ref ScanState s, in SqlToken token, ref StatementFacts f)
    {
        switch (token.Kind)
        {
            case SqlTokenKind.LeftParen:
                if ((s.Mode & ScanMode.Skip) == 0 && s.Prev.Kind is SqlTokenKind.Word or SqlTokenKind.QuotedIdentifier)
                    Call(c.Text, c.Dialect, rules, s, ref f);
                s.Depth++;
                break;
            case SqlTokenKind.RightParen:
                if (s.Depth > 0)
                {
                    if (s.Depth <= MaxTrackedDepth)
                        s.WithDepths &= ~(1UL << s.Depth);
                    s.Depth--;
                }
                break;
            case SqlTokenKind.Word when (s.Mode & ScanMode.Skip) == 0:
                ObserveWord(ref c, ref s, token, ref f);
                break;
            case SqlTokenKind.Operator when c.Dialect == SqlDialect.MySql && (s.Mode & ScanMode.Skip) == 0:
                if (s.Prev.Kind == SqlTokenKind.Variable && (s.Prev.Flags & SqlTokenFlags.SystemVariable) == 0 && token.Slice(c.Text).SequenceEqual(":="u8))
                    f.Session |= SessionEffects.UserVariable;
                break;
        }
        s.Prev3 = s.Prev2;
        s.Prev2 = s.Prev;
        s.Prev = token;
    }

    private static void ObserveWord(ref TokenCursor c, ref ScanState s, in SqlToken token, ref StatementFacts f)
    {
        var keyword = token.Keyword;
        if (keyword == SqlKeyword.None)
            return;
        var pg = c.Dialect == SqlDialect.PostgreSql;
        var afterParen = s.Prev.Kind == SqlTokenKind.LeftParen;
        var inWith = s.Depth <= MaxTrackedDepth && (s.WithDepths & (1UL << s.Depth)) != 0;
        if (keyword == SqlKeyword.With && (afterParen || s.Prev.Kind == SqlTokenKind.End) && s.Depth <= MaxTrackedDepth)
            s.WithDepths |= 1UL << s.Depth;

        if ((s.Mode & (ScanMode.Query | ScanMode.Copy)) != 0
            && keyword is SqlKeyword.Insert or SqlKeyword.Update or SqlKeyword.Delete or SqlKeyword.Merge
            && (afterParen || inWith))
        {
            // A data-modifying CTE body, the main statement of a WITH, or a DML query inside COPY (…).
            f.MarkWrite();
            if (s.Depth == 0)
                s.MainIsDml = true;
        }

        if ((s.Mode & ScanMode.Query) != 0)
        {
            if (keyword == SqlKeyword.For)
            {
                var next = c.Peek();
                if (next.Is(SqlKeyword.Update) || next.Is(SqlKeyword.Share) || next.Is(SqlKeyword.No) || next.Is(SqlKeyword.Key))
                    f.MarkWrite(); // FOR UPDATE / NO KEY UPDATE / SHARE / KEY SHARE, at any depth
            }
            else if (keyword == SqlKeyword.Lock && !pg && c.Peek().Is(SqlKeyword.In))
            {
                f.MarkWrite(); // LOCK IN SHARE MODE
            }
            else if (keyword == SqlKeyword.Into && s.Depth == 0 && !s.MainIsDml)
            {
                Into(ref c, pg, ref f);
            }
        }
        else if ((s.Mode & ScanMode.Copy) != 0 && keyword == SqlKeyword.From && s.Depth == 0)
        {
            f.MarkWrite(); // COPY … FROM
        }

        if ((s.Mode & ScanMode.Compound) != 0)
        {
            if (keyword == SqlKeyword.Begin && (!pg || c.Peek().Is(SqlKeyword.Atomic)))
            {
                s.Compound++;
            }
            else if (keyword == SqlKeyword.Case && s.Compound > 0)
            {
                s.Compound++;
            }
            else if (keyword == SqlKeyword.End && s.Compound > 0)
            {
                var next = c.Peek();
                if (!(next.Is(SqlKeyword.If) || next.Is(SqlKeyword.Loop) || next.Is(SqlKeyword.While) || next.Is(SqlKeyword.Repeat)))
                {
                    s.Compound--;
                    if (next.Is(SqlKeyword.Case))
                        c.Next(out _); // END CASE closes the CASE statement: its CASE opens nothing
                }
            }
        }
    }

    // SELECT … INTO at the top level: PostgreSQL creates a table; MySQL assigns variables or writes a file.
    private static void Into(ref TokenCursor c, bool pg, ref StatementFacts f)
    {
        var next = c.Peek();
        if (pg)
        {
            f.MarkWrite();
            if (next.Is(SqlKeyword.Temp) || next.Is(SqlKeyword.Temporary))
                f.Session |= SessionEffects.TemporaryObject;
        }
        else if (next.Kind == SqlTokenKind.Variable && (next.Flags & SqlTokenFlags.SystemVariable) == 0)
        {
            f.Session |= SessionEffects.UserVariable;
        }
        else if (next.Is(SqlKeyword.Outfile) || next.Is(SqlKeyword.Dumpfile))
        {
            f.MarkWrite();
        }
    }

    // name( or schema.name( just seen: the function call rules.
    private static void Call(ReadOnlySpan<byte> text, SqlDialect dialect, RoutingRules rules, in ScanState s, ref StatementFacts f)
    {
        var name = IdentifierText(text, s.Prev);
        var schema = s.Prev2.Kind == SqlTokenKind.Dot && s.Prev3.Kind is SqlTokenKind.Word or SqlTokenKind.QuotedIdentifier
            ? IdentifierText(text, s.Prev3)
            : default;
        if (rules.WriteFunctionSet.Contains(schema, name))
            f.MarkWrite();
        if (dialect == SqlDialect.PostgreSql)
        {
            if (Ascii.EqualsIgnoreCase(name, "pg_advisory_lock"u8) || Ascii.EqualsIgnoreCase(name, "pg_advisory_lock_shared"u8)
                || Ascii.EqualsIgnoreCase(name, "pg_try_advisory_lock"u8) || Ascii.EqualsIgnoreCase(name, "pg_try_advisory_lock_shared"u8))
                f.Session |= SessionEffects.AdvisoryLock;
            else if (Ascii.EqualsIgnoreCase(name, "set_config"u8))
                f.Session |= SessionEffects.SetParameter;
        }
        else if (Ascii.EqualsIgnoreCase(name, "get_lock"u8))
        {
            f.Session |= SessionEffects.NamedLock;
        }
    }

    /// <summary>An identifier's name: a word as written, a quoted identifier without its quotes (doubled quotes left doubled).</summary>
    internal static ReadOnlySpan<byte> IdentifierText(ReadOnlySpan<byte> text, in SqlToken token)
    {
        var raw = token.Slice(text);
        if (token.Kind != SqlTokenKind.QuotedIdentifier)
            return raw;
        var open = raw.IndexOfAny("\"`"u8);
        var inner = raw[(open + 1)..];
        return token.IsUnterminated || inner.IsEmpty ? inner : inner[..^1];
    }
}
