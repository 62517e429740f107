using System.Buffers;
using System.Numerics;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Text;

namespace MProxy.Edge.Routing;

/// <summary>
/// The routing decision inputs of one query text: read or write, transaction control, session
/// effects, hints and fingerprint. Pure: no I/O, no clock; allocation-free unless the text carries
/// a group name or traceparent hint.
/// </summary>
public static class StatementClassifier
{
    /// <summary>Classifies a query text (one or more statements) given as the UTF-8 bytes of the wire.</summary>
    public static StatementInfo Classify(ReadOnlySpan<byte> sql, SqlDialect dialect, RoutingRules rules)
    {
        ArgumentNullException.ThrowIfNull(rules);
        var options = rules.LexerOptions(dialect);
        var cursor = new TokenCursor(sql, dialect, options, collectHints: true);
        var count = 0;
        var kind = StatementKind.Empty;
        var access = StatementAccess.Neutral;
        var transaction = TransactionEffects.None;
        var isolation = TransactionIsolation.Default;
        var boundary = TransactionBoundary.None;
        var session = SessionEffects.None;
        var name = default(TextRange);
        while (cursor.Next(out var head))
        {
            if (head.Kind == SqlTokenKind.Semicolon)
                continue;
            var facts = new StatementFacts();
            StatementAnalyzer.Analyze(ref cursor, head, rules, ref facts);
            if (count++ == 0)
                kind = facts.Kind;
            if (facts.Access > access)
                access = facts.Access;
            transaction |= facts.Transaction;
            if (facts.Isolation != TransactionIsolation.Default)
                isolation = facts.Isolation;
            if (facts.Boundary != TransactionBoundary.None)
                boundary = facts.Boundary;
            session |= facts.Session;
            if (name.IsEmpty)
                name = facts.Name;
        }
        return new StatementInfo
        {
            Kind = kind,
            Access = access,
            Transaction = transaction,
            Isolation = isolation,
            Boundary = boundary,
            Session = session,
            StatementName = name,
            StatementCount = count,
            HasUnterminatedToken = cursor.HadUnterminated,
            Hints = cursor.BuildHints(),
            Fingerprint = Fingerprinter.Compute(sql, dialect, options),
        };
    }

    private static readonly SearchValues<byte> PreparedCommandInitials = SearchValues.Create("pPeEdD"u8);

    /// <summary>
    /// A cheap test for callers that only need to know whether a text holds SQL-level
    /// <c>PREPARE</c>, <c>EXECUTE</c>, <c>DEALLOCATE</c> or <c>DISCARD</c>: false when none of these
    /// words starts a word in it (keywords are ASCII and never split, and a statement's first word
    /// follows the start of the text, whitespace, a semicolon or a comment — never a letter, digit,
    /// <c>_</c>, <c>$</c> or a non-ASCII byte), so <see cref="Classify"/> can be skipped; true only
    /// means "classify to know" (the word may sit in a literal, a comment or an identifier).
    /// </summary>
    public static bool MayHavePreparedStatementCommand(ReadOnlySpan<byte> sql)
    {
        if (!Vector128.IsHardwareAccelerated || sql.Length <= Vector128<byte>.Count)
            return MayHavePreparedStatementCommandScalar(sql);
        if (StartsCommand(sql, 0))
            return true;
        // Sixteen positions at a time: an initial (p, e, d in either case) whose previous byte does
        // not continue a word. The last block overlaps the one before it; checking a position twice
        // changes nothing. A TPC-B-like statement has one such position (pgbench_…), where the
        // search by initials stopped at every p, e and d.
        ref var text = ref MemoryMarshal.GetReference(sql);
        var last = sql.Length - Vector128<byte>.Count;
        for (var at = 1; ; at = Math.Min(at + Vector128<byte>.Count, last))
        {
            var current = Vector128.LoadUnsafe(ref text, (nuint)at) | Vector128.Create((byte)0x20);
            var previous = Vector128.LoadUnsafe(ref text, (nuint)(at - 1));
            var initial = Vector128.Equals(current, Vector128.Create((byte)'p'))
                | Vector128.Equals(current, Vector128.Create((byte)'e'))
                | Vector128.Equals(current, Vector128.Create((byte)'d'));
            var continuesWord = Vector128.LessThanOrEqual((previous | Vector128.Create((byte)0x20)) - Vector128.Create((byte)'a'), Vector128.Create((byte)('z' - 'a')))
                | Vector128.LessThanOrEqual(previous - Vector128.Create((byte)'0'), Vector128.Create((byte)9))
                | Vector128.Equals(previous, Vector128.Create((byte)'_'))
                | Vector128.Equals(previous, Vector128.Create((byte)'$'))
                | Vector128.GreaterThanOrEqual(previous, Vector128.Create((byte)0x80));
            var starts = Vector128.AndNot(initial, continuesWord).ExtractMostSignificantBits();
            while (starts != 0)
            {
                if (StartsCommand(sql, at + BitOperations.TrailingZeroCount(starts)))
                    return true;
                starts &= starts - 1;
            }
            if (at == last)
                return false;
        }
    }

    /// <summary><see cref="MayHavePreparedStatementCommand"/> a byte at a time (short texts, and no vector hardware).</summary>
    internal static bool MayHavePreparedStatementCommandScalar(ReadOnlySpan<byte> sql)
    {
        var at = 0;
        while (true)
        {
            var next = sql[at..].IndexOfAny(PreparedCommandInitials);
            if (next < 0)
                return false;
            at += next;
            if ((at == 0 || !IsWordByte(sql[at - 1])) && StartsCommand(sql, at))
                return true;
            at++;
        }
    }

    /// <summary>Whether one of the words starts at <paramref name="at"/> (an initial's position: its letter names the one word it could start).</summary>
    private static bool StartsCommand(ReadOnlySpan<byte> sql, int at)
    {
        var rest = sql[at..];
        var word = (rest[0] | 0x20) switch
        {
            'p' => "prepare"u8,
            'e' => "execute"u8,
            'd' => rest.Length > 1 && (rest[1] | 0x20) == 'i' ? "discard"u8 : "deallocate"u8,
            _ => default,
        };
        return !word.IsEmpty && StartsWith(rest, word);
    }

    /// <summary>A byte that continues a word: an identifier or keyword character, or part of a non-ASCII character.</summary>
    private static bool IsWordByte(byte b) => b >= 0x80 || char.IsAsciiLetterOrDigit((char)b) || b is (byte)'_' or (byte)'$';

    private static bool StartsWith(ReadOnlySpan<byte> text, ReadOnlySpan<byte> word) =>
        text.Length >= word.Length && Ascii.EqualsIgnoreCase(text[..word.Length], word);

    /// <summary>The statements of a text one by one (for tracking every PREPARE / DEALLOCATE name); hints and fingerprint are not computed.</summary>
    public static StatementEnumerator Split(ReadOnlySpan<byte> sql, SqlDialect dialect, RoutingRules rules)
    {
        ArgumentNullException.ThrowIfNull(rules);
        return new StatementEnumerator(sql, dialect, rules);
    }
}

/// <summary>Enumerates the statements of a query text without allocating; use with <c>foreach</c>.</summary>
public ref struct StatementEnumerator
{
    private readonly RoutingRules _rules;
    private TokenCursor _cursor;

    internal StatementEnumerator(ReadOnlySpan<byte> sql, SqlDialect dialect, RoutingRules rules)
    {
        _rules = rules;
        _cursor = new TokenCursor(sql, dialect, rules.LexerOptions(dialect), collectHints: false);
    }

    public SqlStatement Current { get; private set; }

    public readonly StatementEnumerator GetEnumerator() => this;

    public bool MoveNext()
    {
        while (_cursor.Next(out var head))
        {
            if (head.Kind == SqlTokenKind.Semicolon)
                continue;
            var facts = new StatementFacts();
            StatementAnalyzer.Analyze(ref _cursor, head, _rules, ref facts);
            Current = facts.ToStatement();
            return true;
        }
        return false;
    }
}
