using System.Buffers;
using System.Text;

namespace MProxy.Edge.Routing;

/// <summary>
/// The shape of a query, in the spirit of pg_stat_statements' normalization, computed from tokens
/// (no parser), so that queries that differ only in their constants share one id:
/// <list type="bullet">
/// <item>strings (including E'', B'', X'', N'', dollar quotes; adjacent strings count as one),
/// numbers (with a unary sign), and parameters ($n, ?) become one placeholder, rendered <c>?</c>;</item>
/// <item>TRUE, FALSE and NULL are kept as words: they usually pick a code path rather than vary
/// per call, and keeping them keeps <c>IS NULL</c> and <c>= NULL</c> apart;</item>
/// <item><c>IN (…)</c> and <c>ARRAY[…]</c> whose elements are all constants collapse to one
/// placeholder whatever their length; a multi-row <c>VALUES (…), (…)</c> keeps its first row;</item>
/// <item>comments (mproxy hints included), whitespace and trailing semicolons do not count;</item>
/// <item>keywords and unquoted identifiers compare ASCII case-insensitively; PostgreSQL quoted
/// identifiers compare case-sensitively, except that "abc" equals abc when the quotes add nothing;
/// MySQL backquoted identifiers compare like unquoted ones (case-insensitively), as MySQL itself
/// treats them.</item>
/// </list>
/// The id is FNV-1a 64 over the normalized token stream (each token: a kind byte, its length as four
/// little-endian bytes, its bytes): stable across runs, machines and versions of .NET. Changing the
/// normalization changes ids; the golden tests pin them.
/// </summary>
public static class Fingerprinter
{
    /// <summary>The query shape's id, without allocating.</summary>
    public static ulong Compute(ReadOnlySpan<byte> sql, SqlDialect dialect, RoutingRules rules)
    {
        ArgumentNullException.ThrowIfNull(rules);
        return Compute(sql, dialect, rules.LexerOptions(dialect));
    }

    /// <summary>The normalized text, e.g. <c>select * from t where id in (?) and name = ?</c>, for telemetry and the admin console.</summary>
    public static string Render(ReadOnlySpan<byte> sql, SqlDialect dialect, RoutingRules rules)
    {
        ArgumentNullException.ThrowIfNull(rules);
        var sink = new RenderSink(new ArrayBufferWriter<byte>(Math.Max(16, sql.Length)));
        Walk(sql, dialect, rules.LexerOptions(dialect), ref sink);
        return sink.ToText();
    }

    internal static ulong Compute(ReadOnlySpan<byte> sql, SqlDialect dialect, SqlLexerOptions options)
    {
        var sink = new HashSink(Fnv1a64.OffsetBasis);
        Walk(sql, dialect, options, ref sink);
        return sink.Hash;
    }

    private static void Walk<TSink>(ReadOnlySpan<byte> sql, SqlDialect dialect, SqlLexerOptions options, ref TSink sink)
        where TSink : struct, IShapeSink
    {
        var pg = dialect == SqlDialect.PostgreSql;
        var lexer = new SqlLexer(sql, dialect, options);
        var emitted = false;            // anything emitted in this statement
        var pendingSeparator = false;   // a ';' seen after something: emitted only if another statement follows
        var signContext = true;         // a '-' or '+' here is a unary sign
        var lastWasString = false;
        var depth = 0;
        var valuesRowDepth = -1;        // the depth at which the first VALUES row opened
        var expectValuesRow = false;
        while (lexer.NextSignificant(out var token))
        {
            if (token.Kind == SqlTokenKind.Semicolon)
            {
                pendingSeparator |= emitted;
                continue;
            }
            if (pendingSeparator)
            {
                sink.Piece(ShapePiece.Separator, ";"u8);
                pendingSeparator = false;
                depth = 0;
                valuesRowDepth = -1;
                signContext = true;
            }
            emitted = true;
            var wasString = lastWasString;
            lastWasString = false;
            var wasExpectingRow = expectValuesRow;
            expectValuesRow = false;
            switch (token.Kind)
            {
                case SqlTokenKind.String:
                    if (!wasString)
                        sink.Piece(ShapePiece.Placeholder, default);
                    lastWasString = true;
                    signContext = false;
                    break;
                case SqlTokenKind.Number:
                case SqlTokenKind.Parameter:
                    sink.Piece(ShapePiece.Placeholder, default);
                    signContext = false;
                    break;
                case SqlTokenKind.Word:
                    if (token.Keyword == SqlKeyword.In && TryCollapseList(ref lexer, SqlTokenKind.LeftParen, SqlTokenKind.RightParen))
                    {
                        sink.Piece(ShapePiece.Word, token.Slice(sql));
                        sink.Piece(ShapePiece.Symbol, "("u8);
                        sink.Piece(ShapePiece.Placeholder, default);
                        sink.Piece(ShapePiece.Symbol, ")"u8);
                        signContext = false;
                        break;
                    }
                    if (token.Keyword == SqlKeyword.Array && TryCollapseList(ref lexer, SqlTokenKind.LeftBracket, SqlTokenKind.RightBracket))
                    {
                        sink.Piece(ShapePiece.Word, token.Slice(sql));
                        sink.Piece(ShapePiece.Symbol, "["u8);
                        sink.Piece(ShapePiece.Placeholder, default);
                        sink.Piece(ShapePiece.Symbol, "]"u8);
                        signContext = false;
                        break;
                    }
                    sink.Piece(ShapePiece.Word, token.Slice(sql));
                    expectValuesRow = token.Keyword == SqlKeyword.Values || (wasExpectingRow && !pg && token.Keyword == SqlKeyword.Row);
                    signContext = IsSignContextWord(token.Keyword);
                    break;
                case SqlTokenKind.QuotedIdentifier:
                    QuotedIdentifier(sql, token, pg, ref sink);
                    signContext = false;
                    break;
                case SqlTokenKind.Variable:
                    sink.Piece(ShapePiece.Variable, token.Slice(sql));
                    signContext = false;
                    break;
                case SqlTokenKind.Operator when signContext && IsSign(sql, token) && NextIsNumber(lexer):
                    break; // the sign belongs to the constant that follows
                case SqlTokenKind.LeftParen:
                    if (wasExpectingRow && valuesRowDepth < 0)
                        valuesRowDepth = depth;
                    depth++;
                    sink.Piece(ShapePiece.Symbol, token.Slice(sql));
                    signContext = true;
                    break;
                case SqlTokenKind.RightParen:
                    if (depth > 0)
                        depth--;
                    sink.Piece(ShapePiece.Symbol, token.Slice(sql));
                    signContext = false;
                    if (depth == valuesRowDepth)
                    {
                        valuesRowDepth = -1;
                        SkipExtraRows(ref lexer, pg);
                    }
                    break;
                case SqlTokenKind.RightBracket:
                    sink.Piece(ShapePiece.Symbol, token.Slice(sql));
                    signContext = false;
                    break;
                default:
                    sink.Piece(ShapePiece.Symbol, token.Slice(sql));
                    signContext = true;
                    break;
            }
        }
    }

    private static void QuotedIdentifier<TSink>(ReadOnlySpan<byte> sql, in SqlToken token, bool pg, ref TSink sink)
        where TSink : struct, IShapeSink
    {
        var name = StatementAnalyzer.IdentifierText(sql, token);
        if (pg)
            sink.Piece(IsPlainLowerIdentifier(name) ? ShapePiece.Word : ShapePiece.QuotedIdentifier, name);
        else
            sink.Piece(IsPlainIdentifier(name) ? ShapePiece.Word : ShapePiece.FoldedQuotedIdentifier, name);
    }

    // What MySQL would read the same without backquotes (in either case).
    private static bool IsPlainIdentifier(ReadOnlySpan<byte> name)
    {
        if (name.IsEmpty)
            return false;
        foreach (var b in name)
        {
            if (!SqlLexer.IsIdentifierPart(b))
                return false;
        }
        return true;
    }

    // What PostgreSQL would read the same without quotes: [a-z_][a-z0-9_$]*, non-ASCII allowed.
    private static bool IsPlainLowerIdentifier(ReadOnlySpan<byte> name)
    {
        if (name.IsEmpty || !(name[0] is >= (byte)'a' and <= (byte)'z' or (byte)'_' or >= 0x80))
            return false;
        foreach (var b in name)
        {
            if (!(b is >= (byte)'a' and <= (byte)'z' or >= (byte)'0' and <= (byte)'9' or (byte)'_' or (byte)'$' or >= 0x80))
                return false;
        }
        return true;
    }

    private static bool IsSign(ReadOnlySpan<byte> sql, in SqlToken token) =>
        token.Length == 1 && sql[token.Start] is (byte)'-' or (byte)'+';

    private static bool NextIsNumber(SqlLexer probe) => probe.NextSignificant(out var next) && next.Kind == SqlTokenKind.Number;

    // After these words a '-' or '+' starts a value rather than subtracting from one.
    private static bool IsSignContextWord(SqlKeyword keyword) => keyword is SqlKeyword.Select or SqlKeyword.Where or SqlKeyword.And
        or SqlKeyword.Or or SqlKeyword.Not or SqlKeyword.When or SqlKeyword.Then or SqlKeyword.Else or SqlKeyword.Between
        or SqlKeyword.Limit or SqlKeyword.Offset or SqlKeyword.Having or SqlKeyword.On or SqlKeyword.Returning or SqlKeyword.Like
        or SqlKeyword.Is or SqlKeyword.In or SqlKeyword.Values or SqlKeyword.By or SqlKeyword.Set or SqlKeyword.Return
        or SqlKeyword.Case or SqlKeyword.Distinct or SqlKeyword.All or SqlKeyword.Do or SqlKeyword.Using;

    /// <summary>
    /// At IN or ARRAY: if a bracketed list of constants follows (each a string, number with optional
    /// sign, parameter, TRUE, FALSE or NULL, optionally cast with ::type), consume it and return true.
    /// </summary>
    private static bool TryCollapseList(ref SqlLexer lexer, SqlTokenKind open, SqlTokenKind close)
    {
        var probe = lexer;
        if (!probe.NextSignificant(out var token) || token.Kind != open)
            return false;
        var text = probe.Text;
        while (true)
        {
            if (!probe.NextSignificant(out token))
                return false;
            if (token.Kind == SqlTokenKind.Operator && IsSign(text, token) && !probe.NextSignificant(out token))
                return false;
            if (token.Kind == SqlTokenKind.String)
            {
                var after = probe;
                while (after.NextSignificant(out var next) && next.Kind == SqlTokenKind.String)
                    probe = after;
            }
            else if (!(token.Kind is SqlTokenKind.Number or SqlTokenKind.Parameter
                || token.Is(SqlKeyword.True) || token.Is(SqlKeyword.False) || token.Is(SqlKeyword.Null)))
            {
                return false;
            }
            if (!probe.NextSignificant(out token))
                return false;
            if (token.Kind == SqlTokenKind.Operator && token.Slice(text).SequenceEqual("::"u8))
            {
                if (!probe.NextSignificant(out token) || token.Kind is not (SqlTokenKind.Word or SqlTokenKind.QuotedIdentifier))
                    return false;
                if (!probe.NextSignificant(out token))
                    return false;
            }
            if (token.Kind == close)
            {
                lexer = probe;
                return true;
            }
            if (token.Kind != SqlTokenKind.Comma)
                return false;
        }
    }

    // After the first VALUES row: skip ", (…)" (MySQL also ", ROW(…)") groups.
    private static void SkipExtraRows(ref SqlLexer lexer, bool pg)
    {
        while (true)
        {
            var probe = lexer;
            if (!probe.NextSignificant(out var token) || token.Kind != SqlTokenKind.Comma)
                return;
            if (!probe.NextSignificant(out token))
                return;
            if (!pg && token.Is(SqlKeyword.Row) && !probe.NextSignificant(out token))
                return;
            if (token.Kind != SqlTokenKind.LeftParen)
                return;
            var depth = 1;
            while (depth > 0 && probe.NextSignificant(out token))
            {
                if (token.Kind == SqlTokenKind.LeftParen)
                    depth++;
                else if (token.Kind == SqlTokenKind.RightParen)
                    depth--;
                else if (token.Kind == SqlTokenKind.Semicolon)
                    return; // malformed row: keep it
            }
            lexer = probe;
        }
    }
}

internal enum ShapePiece : byte
{
    /// <summary>A keyword or unquoted (or equivalent) identifier, compared case-insensitively.</summary>
    Word = 1,

    /// <summary>A quoted identifier that differs from its unquoted reading, compared exactly.</summary>
    QuotedIdentifier = 2,

    /// <summary>A constant or parameter.</summary>
    Placeholder = 3,

    /// <summary>An operator or punctuation, exactly.</summary>
    Symbol = 4,

    /// <summary>A MySQL @variable, compared case-insensitively.</summary>
    Variable = 5,

    /// <summary>The semicolon between two statements.</summary>
    Separator = 6,

    /// <summary>A MySQL backquoted identifier that needs its quotes, compared case-insensitively like any MySQL identifier.</summary>
    FoldedQuotedIdentifier = 7,
}

internal interface IShapeSink
{
    void Piece(ShapePiece kind, ReadOnlySpan<byte> bytes);
}

/// <summary>FNV-1a, 64-bit.</summary>
internal static class Fnv1a64
{
    public const ulong OffsetBasis = 14695981039346656037;
    public const ulong Prime = 1099511628211;

    public static ulong Append(ulong hash, byte b) => (hash ^ b) * Prime;

    public static ulong Append(ulong hash, ReadOnlySpan<byte> bytes)
    {
        foreach (var b in bytes)
            hash = (hash ^ b) * Prime;
        return hash;
    }

    public static ulong Hash(ReadOnlySpan<byte> bytes) => Append(OffsetBasis, bytes);
}

internal struct HashSink(ulong hash) : IShapeSink
{
    public ulong Hash = hash;

    public void Piece(ShapePiece kind, ReadOnlySpan<byte> bytes)
    {
        var hash = Fnv1a64.Append(Hash, (byte)kind);
        var length = bytes.Length; // four bytes, little-endian
        hash = Fnv1a64.Append(hash, (byte)length);
        hash = Fnv1a64.Append(hash, (byte)(length >> 8));
        hash = Fnv1a64.Append(hash, (byte)(length >> 16));
        hash = Fnv1a64.Append(hash, (byte)(length >> 24));
        var fold = kind is ShapePiece.Word or ShapePiece.Variable or ShapePiece.FoldedQuotedIdentifier;
        foreach (var b in bytes)
            hash = Fnv1a64.Append(hash, fold && (uint)(b - 'A') <= 'Z' - 'A' ? (byte)(b | 0x20) : b);
        Hash = hash;
    }
}

/// <summary>
/// Writes the normalized text: words in lower case, one space between tokens, none inside brackets,
/// around dots and casts, before commas, or between a function name and its parenthesis.
/// </summary>
internal struct RenderSink(ArrayBufferWriter<byte> output) : IShapeSink
{
    private readonly ArrayBufferWriter<byte> _output = output;
    private ShapePiece _last;
    private byte _lastSymbol;
    private bool _lastWordOpensClause;

    public void Piece(ShapePiece kind, ReadOnlySpan<byte> bytes)
    {
        if (_last != 0 && NeedsSpace(kind, bytes))
            Write(" "u8);
        switch (kind)
        {
            case ShapePiece.Placeholder:
                Write("?"u8);
                break;
            case ShapePiece.QuotedIdentifier:
                Write("\""u8);
                Write(bytes);
                Write("\""u8);
                break;
            case ShapePiece.Word:
            case ShapePiece.Variable:
                WriteLower(bytes);
                break;
            case ShapePiece.FoldedQuotedIdentifier:
                Write("`"u8);
                WriteLower(bytes);
                Write("`"u8);
                break;
            default:
                Write(bytes);
                break;
        }
        _last = kind;
        _lastSymbol = kind is ShapePiece.Symbol or ShapePiece.Separator && bytes.Length == 1 ? bytes[0] : (byte)0;
        if (kind == ShapePiece.Symbol && bytes.SequenceEqual("::"u8))
            _lastSymbol = (byte)':';
        _lastWordOpensClause = kind == ShapePiece.Word && SqlKeywords.Lookup(bytes) is SqlKeyword.In or SqlKeyword.Values
            or SqlKeyword.As or SqlKeyword.From or SqlKeyword.Join or SqlKeyword.On or SqlKeyword.Using or SqlKeyword.And
            or SqlKeyword.Or or SqlKeyword.Not or SqlKeyword.Where or SqlKeyword.Select or SqlKeyword.Into or SqlKeyword.Table
            or SqlKeyword.Set or SqlKeyword.With or SqlKeyword.Returning or SqlKeyword.Exists or SqlKeyword.Then
            or SqlKeyword.Else or SqlKeyword.When or SqlKeyword.By or SqlKeyword.Having or SqlKeyword.Is;
    }

    public readonly string ToText() => Encoding.UTF8.GetString(_output.WrittenSpan);

    private readonly bool NeedsSpace(ShapePiece kind, ReadOnlySpan<byte> bytes)
    {
        if (_lastSymbol is (byte)'(' or (byte)'[' or (byte)'.' or (byte)':')
            return false;
        if (kind == ShapePiece.Separator)
            return false;
        if (kind != ShapePiece.Symbol)
            return true;
        if (bytes.SequenceEqual("::"u8))
            return false;
        if (bytes.Length != 1)
            return true;
        return bytes[0] switch
        {
            (byte)')' or (byte)']' or (byte)',' or (byte)'.' or (byte)'[' or (byte)':' => false,
            (byte)'(' => !(_last is ShapePiece.QuotedIdentifier or ShapePiece.FoldedQuotedIdentifier or ShapePiece.Variable || (_last == ShapePiece.Word && !_lastWordOpensClause)),
            _ => true,
        };
    }

    private readonly void Write(ReadOnlySpan<byte> bytes) => _output.Write(bytes);

    private readonly void WriteLower(ReadOnlySpan<byte> bytes)
    {
        var span = _output.GetSpan(bytes.Length);
        for (var i = 0; i < bytes.Length; i++)
            span[i] = (uint)(bytes[i] - 'A') <= 'Z' - 'A' ? (byte)(bytes[i] | 0x20) : bytes[i];
        _output.Advance(bytes.Length);
    }
}
