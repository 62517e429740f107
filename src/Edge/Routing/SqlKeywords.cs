using System.Text;

namespace MProxy.Edge.Routing;

/// <summary>
/// The words the classifier and fingerprinter act on. Not a full keyword list of either dialect:
/// any other word is <see cref="None"/>. The spelling is the member name in upper case, with an
/// underscore before each inner capital (<see cref="PersistOnly"/> is PERSIST_ONLY).
/// </summary>
internal enum SqlKeyword : byte
{
    None,
    Abort,
    All,
    Alter,
    Analyse,
    Analyze,
    And,
    Any,
    Array,
    As,
    Atomic,
    Autocommit,
    Begin,
    Between,
    By,
    Call,
    Case,
    Chain,
    Character,
    Characteristics,
    Charset,
    Close,
    Commit,
    Committed,
    Constraints,
    Copy,
    Create,
    Cursor,
    Deallocate,
    Declare,
    Delete,
    Desc,
    Describe,
    Discard,
    Distinct,
    Do,
    Drop,
    Dumpfile,
    Else,
    End,
    Execute,
    Exists,
    Explain,
    False,
    Fetch,
    For,
    Format,
    From,
    Global,
    Grant,
    Having,
    Hold,
    If,
    In,
    Insert,
    Into,
    Is,
    Isolation,
    Join,
    Key,
    Level,
    Like,
    Limit,
    Listen,
    Load,
    Local,
    Lock,
    Loop,
    Merge,
    Move,
    Names,
    No,
    Not,
    Notify,
    Null,
    Off,
    Offset,
    On,
    Only,
    Or,
    Outfile,
    Persist,
    PersistOnly,
    Prepare,
    Prepared,
    Read,
    Recursive,
    Release,
    Repeat,
    Repeatable,
    Replace,
    Reset,
    Return,
    Returning,
    Revoke,
    Rollback,
    Row,
    Savepoint,
    Select,
    Sequence,
    Serializable,
    Session,
    Set,
    Share,
    Show,
    Start,
    Table,
    Tables,
    Temp,
    Temporary,
    Then,
    To,
    Transaction,
    True,
    Truncate,
    Uncommitted,
    Unlisten,
    Unlock,
    Update,
    Use,
    Using,
    Vacuum,
    Values,
    Verbose,
    View,
    When,
    Where,
    While,
    With,
    Without,
    Work,
    Write,
    Xa,
}

/// <summary>Looks words up as <see cref="SqlKeyword"/>, ASCII case-insensitively and without allocating.</summary>
internal static class SqlKeywords
{
    private const int Letters = 26;

    // Buckets by (length, first letter): a lookup compares against one or two candidates at most.
    private static readonly (byte[] Spelling, SqlKeyword Keyword)[][] Buckets = Build(out MaxLength);

    private static readonly int MaxLength;

    public static SqlKeyword Lookup(ReadOnlySpan<byte> word)
    {
        if (word.Length < 2 || word.Length > MaxLength)
            return SqlKeyword.None;
        var first = word[0] | 0x20;
        if (first < 'a' || first > 'z')
            return SqlKeyword.None;
        foreach (var (spelling, keyword) in Buckets[(word.Length * Letters) + first - 'a'])
        {
            if (Ascii.EqualsIgnoreCase(spelling, word))
                return keyword;
        }
        return SqlKeyword.None;
    }

    /// <summary>The keyword's spelling in upper case.</summary>
    public static string Spell(SqlKeyword keyword)
    {
        var name = keyword.ToString();
        var spelling = new StringBuilder(name.Length + 2);
        for (var i = 0; i < name.Length; i++)
        {
            if (i > 0 && char.IsAsciiLetterUpper(name[i]))
                spelling.Append('_');
            spelling.Append(char.ToUpperInvariant(name[i]));
        }
        return spelling.ToString();
    }

    private static (byte[], SqlKeyword)[][] Build(out int maxLength)
    {
        var keywords = Enum.GetValues<SqlKeyword>();
        maxLength = 0;
        foreach (var keyword in keywords)
            maxLength = Math.Max(maxLength, Spell(keyword).Length);
        var lists = new List<(byte[], SqlKeyword)>[(maxLength + 1) * Letters];
        foreach (var keyword in keywords)
        {
            if (keyword == SqlKeyword.None)
                continue;
            var spelling = Encoding.ASCII.GetBytes(Spell(keyword));
            var index = (spelling.Length * Letters) + (spelling[0] | 0x20) - 'a';
            (lists[index] ??= []).Add((spelling, keyword));
        }
        var buckets = new (byte[], SqlKeyword)[lists.Length][];
        for (var i = 0; i < lists.Length; i++)
            buckets[i] = lists[i]?.ToArray() ?? [];
        return buckets;
    }
}
