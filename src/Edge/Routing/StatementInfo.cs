namespace MProxy.Edge.Routing;

/// <summary>The SQL dialect a query text is written in; it decides how quotes, comments and parameters read.</summary>
public enum SqlDialect
{
    PostgreSql,
    MySql,
}

/// <summary>The kind of a statement, named after its leading keyword (synonyms folded: END is Commit, ABORT is Rollback).</summary>
public enum StatementKind
{
    /// <summary>No statement: empty text, whitespace, comments or lone semicolons.</summary>
    Empty,
    Unknown,
    Select,
    Values,
    Table,
    With,
    Show,
    Explain,
    Describe,
    Insert,
    Update,
    Delete,
    Merge,
    Replace,
    Create,
    Alter,
    Drop,
    Truncate,
    Grant,
    Revoke,
    Call,
    Do,
    Copy,
    Lock,
    Unlock,
    Vacuum,
    Analyze,
    Begin,
    Commit,
    Rollback,
    Savepoint,
    Release,
    Prepare,
    Execute,
    Deallocate,
    Discard,
    Listen,
    Unlisten,
    Notify,
    Set,
    Reset,
    Declare,
    Fetch,
    Move,
    Close,
    Load,
    Use,
    Xa,
}

/// <summary>What a statement needs from the server it runs on.</summary>
public enum StatementAccess
{
    /// <summary>
    /// Touches no data and runs wherever the current transaction runs: COMMIT, ROLLBACK, SAVEPOINT,
    /// RELEASE, ROLLBACK TO, SET LOCAL / SET TRANSACTION, FETCH / MOVE / CLOSE; also empty text.
    /// </summary>
    Neutral,

    /// <summary>Only reads: a replica may serve it.</summary>
    Read,

    /// <summary>Writes, locks, changes the server or the session, or is not understood: the primary must serve it.</summary>
    Write,
}

/// <summary>Transaction control found in a query text (all statements together).</summary>
[Flags]
public enum TransactionEffects
{
    None = 0,

    /// <summary>BEGIN, START TRANSACTION, or COMMIT/ROLLBACK AND CHAIN (which opens the next one).</summary>
    Begin = 1 << 0,

    /// <summary>COMMIT or END.</summary>
    Commit = 1 << 1,

    /// <summary>ROLLBACK or ABORT that ends the transaction (ROLLBACK TO SAVEPOINT is <see cref="RollbackToSavepoint"/>).</summary>
    Rollback = 1 << 2,
    Savepoint = 1 << 3,
    ReleaseSavepoint = 1 << 4,
    RollbackToSavepoint = 1 << 5,

    /// <summary>PREPARE TRANSACTION: the transaction leaves the session (two-phase commit).</summary>
    PrepareTransaction = 1 << 6,
    CommitPrepared = 1 << 7,
    RollbackPrepared = 1 << 8,

    /// <summary>SET TRANSACTION: characteristics of the current (PostgreSQL) or next (MySQL) transaction.</summary>
    SetCharacteristics = 1 << 9,

    /// <summary>COMMIT/ROLLBACK AND CHAIN.</summary>
    Chain = 1 << 10,

    /// <summary>READ ONLY was requested by BEGIN, START TRANSACTION or SET TRANSACTION.</summary>
    ReadOnly = 1 << 11,

    /// <summary>READ WRITE was requested by BEGIN, START TRANSACTION or SET TRANSACTION.</summary>
    ReadWrite = 1 << 12,

    /// <summary>MySQL <c>SET autocommit = 0</c>: from now on every statement opens a transaction.</summary>
    AutocommitOff = 1 << 13,

    /// <summary>MySQL <c>SET autocommit = 1</c> (commits an open transaction).</summary>
    AutocommitOn = 1 << 14,
}

/// <summary>Isolation level asked for by BEGIN / START TRANSACTION / SET TRANSACTION.</summary>
public enum TransactionIsolation
{
    Default,
    ReadUncommitted,
    ReadCommitted,
    RepeatableRead,
    Serializable,
}

/// <summary>The transaction boundary a text crosses, judged by its last transaction-control statement.</summary>
public enum TransactionBoundary
{
    None,

    /// <summary>A transaction is open after the text (BEGIN, START TRANSACTION, COMMIT AND CHAIN).</summary>
    Opens,

    /// <summary>No transaction is open after the text (COMMIT, END, ROLLBACK, ABORT, PREPARE TRANSACTION).</summary>
    Closes,
}

/// <summary>
/// Effects that outlive the transaction and so tie a client to its server connection (or make the
/// connection need a reset before another client may use it).
/// </summary>
[Flags]
public enum SessionEffects
{
    None = 0,

    /// <summary>Session-level SET (not SET LOCAL / SET TRANSACTION), SET SESSION, SET ROLE, set_config(); MySQL SET [SESSION] var, SET NAMES, SET CHARACTER SET.</summary>
    SetParameter = 1 << 0,

    /// <summary>RESET name / RESET ALL (PostgreSQL).</summary>
    ResetParameter = 1 << 1,

    /// <summary>SQL-level PREPARE name: see <see cref="StatementInfo.StatementName"/>.</summary>
    Prepare = 1 << 2,

    /// <summary>SQL-level EXECUTE name.</summary>
    Execute = 1 << 3,

    /// <summary>DEALLOCATE [PREPARE] name / ALL; MySQL also DROP PREPARE name.</summary>
    Deallocate = 1 << 4,

    /// <summary>DEALLOCATE ALL (set together with <see cref="Deallocate"/>).</summary>
    DeallocateAll = 1 << 5,

    /// <summary>DISCARD ALL / PLANS / TEMP / SEQUENCES.</summary>
    Discard = 1 << 6,
    Listen = 1 << 7,
    Unlisten = 1 << 8,

    /// <summary>CREATE TEMP TABLE / VIEW / SEQUENCE, SELECT … INTO TEMP; MySQL CREATE TEMPORARY TABLE.</summary>
    TemporaryObject = 1 << 9,

    /// <summary>DECLARE … CURSOR WITH HOLD.</summary>
    HoldableCursor = 1 << 10,

    /// <summary>Session-level advisory lock: pg_advisory_lock[_shared], pg_try_advisory_lock[_shared] (not the _xact_ ones).</summary>
    AdvisoryLock = 1 << 11,

    /// <summary>LOAD 'library' (PostgreSQL).</summary>
    Load = 1 << 12,

    /// <summary>MySQL user variable assigned: SET @x, SELECT @x := …, SELECT … INTO @x.</summary>
    UserVariable = 1 << 13,

    /// <summary>MySQL LOCK TABLES.</summary>
    TableLock = 1 << 14,

    /// <summary>MySQL UNLOCK TABLES.</summary>
    UnlockTables = 1 << 15,

    /// <summary>MySQL GET_LOCK().</summary>
    NamedLock = 1 << 16,

    /// <summary>MySQL USE db.</summary>
    UseDatabase = 1 << 17,
}

/// <summary>A range of bytes in the query text (no copy).</summary>
public readonly record struct TextRange(int Offset, int Length)
{
    public bool IsEmpty => Length == 0;

    public int End => Offset + Length;

    public ReadOnlySpan<byte> Slice(ReadOnlySpan<byte> text) => text.Slice(Offset, Length);
}

/// <summary>One statement of a query text, as <see cref="StatementClassifier.Split"/> yields it.</summary>
public readonly record struct SqlStatement
{
    public StatementKind Kind { get; init; }

    public StatementAccess Access { get; init; }

    public TransactionEffects Transaction { get; init; }

    public TransactionIsolation Isolation { get; init; }

    public TransactionBoundary Boundary { get; init; }

    public SessionEffects Session { get; init; }

    /// <summary>
    /// For SQL-level PREPARE / EXECUTE / DEALLOCATE (and MySQL DROP PREPARE): the statement name token
    /// as written, quotes included when it is a quoted identifier; empty otherwise.
    /// </summary>
    public TextRange StatementName { get; init; }

    /// <summary>The statement's text, from its first token to its last, without the terminating semicolon.</summary>
    public TextRange Text { get; init; }
}

/// <summary>
/// What the routing layer learned about one query text (one or more statements separated by
/// semicolons): computed by <see cref="StatementClassifier.Classify"/> without I/O and, when the
/// text carries no hints, without allocating.
/// </summary>
public readonly record struct StatementInfo
{
    /// <summary>The kind of the first statement; <see cref="StatementKind.Empty"/> when there is none.</summary>
    public StatementKind Kind { get; init; }

    /// <summary>Write if any statement writes; else Read if any reads; else Neutral.</summary>
    public StatementAccess Access { get; init; }

    /// <summary>A replica may serve the text: no statement needs the primary (neutral statements do not).</summary>
    public bool IsRead => Access != StatementAccess.Write;

    public bool IsWrite => Access == StatementAccess.Write;

    /// <summary>Transaction control of all statements, or-ed together.</summary>
    public TransactionEffects Transaction { get; init; }

    /// <summary>The isolation level asked for by the last statement that named one.</summary>
    public TransactionIsolation Isolation { get; init; }

    /// <summary>The boundary of the last statement that crossed one.</summary>
    public TransactionBoundary Boundary { get; init; }

    /// <summary>Session effects of all statements, or-ed together.</summary>
    public SessionEffects Session { get; init; }

    /// <summary>The name token of the first SQL-level PREPARE / EXECUTE / DEALLOCATE; use <see cref="StatementClassifier.Split"/> for all of them.</summary>
    public TextRange StatementName { get; init; }

    /// <summary>How many statements the text holds (empty statements between semicolons not counted).</summary>
    public int StatementCount { get; init; }

    /// <summary>A string, quoted identifier, dollar quote or comment ran to the end of the text unterminated.</summary>
    public bool HasUnterminatedToken { get; init; }

    /// <summary>Magic-comment hints (<c>/* mproxy: … */</c>); default when there are none.</summary>
    public QueryHints Hints { get; init; }

    /// <summary>The query shape's stable 64-bit id (see <see cref="Fingerprinter"/>).</summary>
    public ulong Fingerprint { get; init; }

    public bool IsEmpty => StatementCount == 0;
}
