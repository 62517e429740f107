namespace MProxy.Edge.Routing;

/// <summary>Session settings that change how strings and quotes lex.</summary>
[Flags]
internal enum SqlLexerOptions : byte
{
    None = 0,

    /// <summary>PostgreSQL standard_conforming_strings = off: plain '…' honours backslash escapes like E'…'.</summary>
    BackslashInPlainStrings = 1,

    /// <summary>MySQL sql_mode NO_BACKSLASH_ESCAPES.</summary>
    NoBackslashEscapes = 2,

    /// <summary>MySQL sql_mode ANSI_QUOTES: "…" is an identifier.</summary>
    AnsiQuotes = 4,
}

/// <summary>
/// Tokenizes a query text given as the UTF-8 bytes the wire carries, for PostgreSQL or MySQL.
/// Whitespace is skipped; comments come out as tokens (the hint parser reads them); MySQL's
/// executable comments <c>/*! … */</c> and <c>/*M! … */</c> are transparent, their content lexed as
/// code. Never throws and always advances: a string, quoted identifier, dollar quote or comment
/// without its closing delimiter ends at the end of the text with
/// <see cref="SqlTokenFlags.Unterminated"/>. Copying the lexer (it is a struct) gives an
/// independent lookahead.
/// </summary>
internal ref struct SqlLexer
{
    private readonly ReadOnlySpan<byte> _text;
    private readonly SqlDialect _dialect;
    private readonly SqlLexerOptions _options;
    private int _position;
    private bool _inExecutableComment;
    private bool _hadUnterminated;

    public SqlLexer(ReadOnlySpan<byte> text, SqlDialect dialect, SqlLexerOptions options = SqlLexerOptions.None)
    {
        _text = text;
        _dialect = dialect;
        _options = options;
    }

    public readonly ReadOnlySpan<byte> Text => _text;

    public readonly SqlDialect Dialect => _dialect;

    /// <summary>Where the next token search starts.</summary>
    public readonly int Position => _position;

    /// <summary>Some token so far was unterminated (or a MySQL executable comment was never closed).</summary>
    public readonly bool HadUnterminated => _hadUnterminated;

    /// <summary>Reads the next token, comments included.</summary>
    /// <returns>false at the end of the text.</returns>
    public bool Next(out SqlToken token)
    {
        var text = _text;
        var pos = _position;
        while (true)
        {
            while (pos < text.Length && IsWhitespace(text[pos]))
                pos++;
            if (pos >= text.Length)
            {
                if (_inExecutableComment)
                {
                    _inExecutableComment = false;
                    _hadUnterminated = true;
                }
                _position = pos;
                token = default;
                return false;
            }
            var c = text[pos];
            if (c == '*' && _inExecutableComment && At(pos + 1) == '/')
            {
                _inExecutableComment = false;
                pos += 2;
                continue;
            }
            if (c == '/' && At(pos + 1) == '*' && _dialect == SqlDialect.MySql && !_inExecutableComment && TryEnterExecutableComment(ref pos))
                continue;
            token = Scan(pos, c);
            break;
        }
        _position = token.End;
        if (token.IsUnterminated)
            _hadUnterminated = true;
        return true;
    }

    /// <summary>Reads the next token that is not a comment.</summary>
    public bool NextSignificant(out SqlToken token)
    {
        while (Next(out token))
        {
            if (!token.IsComment)
                return true;
        }
        return false;
    }

    private readonly byte At(int index) => (uint)index < (uint)_text.Length ? _text[index] : (byte)0;

    private readonly SqlToken Scan(int pos, byte c)
    {
        var pg = _dialect == SqlDialect.PostgreSql;
        switch (c)
        {
            case (byte)'-' when At(pos + 1) == '-' && (pg || IsMySqlDashCommentEnd(pos + 2)):
                return LineComment(pos);
            case (byte)'#' when !pg:
                return LineComment(pos);
            case (byte)'/' when At(pos + 1) == '*':
                return BlockComment(pos);
            case (byte)'\'':
                return Quoted(SqlTokenKind.String, pos, pos, PlainStringEscapes());
            case (byte)'"':
                if (pg || (_options & SqlLexerOptions.AnsiQuotes) != 0)
                    return Quoted(SqlTokenKind.QuotedIdentifier, pos, pos, backslash: false);
                return Quoted(SqlTokenKind.String, pos, pos, PlainStringEscapes());
            case (byte)'`' when !pg:
                return Quoted(SqlTokenKind.QuotedIdentifier, pos, pos, backslash: false);
            case (byte)'$' when pg:
                return Dollar(pos);
            case (byte)'?' when !pg:
                return new SqlToken(SqlTokenKind.Parameter, pos, 1);
            case (byte)'@' when !pg:
                return Variable(pos);
            case (byte)'(':
                return new SqlToken(SqlTokenKind.LeftParen, pos, 1);
            case (byte)')':
                return new SqlToken(SqlTokenKind.RightParen, pos, 1);
            case (byte)'[':
                return new SqlToken(SqlTokenKind.LeftBracket, pos, 1);
            case (byte)']':
                return new SqlToken(SqlTokenKind.RightBracket, pos, 1);
            case (byte)',':
                return new SqlToken(SqlTokenKind.Comma, pos, 1);
            case (byte)';':
                return new SqlToken(SqlTokenKind.Semicolon, pos, 1);
            case (byte)'.':
                return IsDigit(At(pos + 1)) ? Number(pos) : new SqlToken(SqlTokenKind.Dot, pos, 1);
            case (byte)':':
                return new SqlToken(SqlTokenKind.Operator, pos, At(pos + 1) is (byte)':' or (byte)'=' ? 2 : 1);
        }
        if (IsDigit(c))
            return Number(pos);
        if (IsIdentifierStart(c) || (c == '$' && !pg))
            return WordOrPrefixedString(pos, c);
        return pg ? PgOperator(pos) : MySqlOperator(pos);
    }

    private readonly bool PlainStringEscapes() => _dialect == SqlDialect.PostgreSql
        ? (_options & SqlLexerOptions.BackslashInPlainStrings) != 0
        : (_options & SqlLexerOptions.NoBackslashEscapes) == 0;

    // MySQL reads "--" as a comment only when a space or control character (or the end) follows.
    private readonly bool IsMySqlDashCommentEnd(int index) => index >= _text.Length || _text[index] <= ' ';

    private readonly SqlToken LineComment(int pos)
    {
        var end = _text[pos..].IndexOf((byte)'\n');
        return new SqlToken(SqlTokenKind.LineComment, pos, end < 0 ? _text.Length - pos : end);
    }

    private readonly SqlToken BlockComment(int pos)
    {
        var text = _text;
        if (_dialect == SqlDialect.MySql)
        {
            var close = text[(pos + 2)..].IndexOf("*/"u8);
            return close < 0
                ? new SqlToken(SqlTokenKind.BlockComment, pos, text.Length - pos, Flags: SqlTokenFlags.Unterminated)
                : new SqlToken(SqlTokenKind.BlockComment, pos, close + 4);
        }
        var depth = 1;
        var i = pos + 2;
        while (i < text.Length - 1)
        {
            if (text[i] == '/' && text[i + 1] == '*')
            {
                depth++;
                i += 2;
            }
            else if (text[i] == '*' && text[i + 1] == '/')
            {
                i += 2;
                if (--depth == 0)
                    return new SqlToken(SqlTokenKind.BlockComment, pos, i - pos);
            }
            else
            {
                i++;
            }
        }
        return new SqlToken(SqlTokenKind.BlockComment, pos, text.Length - pos, Flags: SqlTokenFlags.Unterminated);
    }

    // MySQL /*!…*/ and MariaDB /*M!…*/ (optionally with a version number): the content is executed.
    private bool TryEnterExecutableComment(ref int pos)
    {
        var i = pos + 2;
        if (At(i) == 'M' && At(i + 1) == '!')
            i++;
        if (At(i) != '!')
            return false;
        i++;
        var digits = 0;
        while (digits < 6 && IsDigit(At(i)))
        {
            i++;
            digits++;
        }
        _inExecutableComment = true;
        pos = i;
        return true;
    }

    /// <summary>A quoted token whose opening quote is at <paramref name="quote"/> (after any prefix starting at <paramref name="start"/>).</summary>
    private readonly SqlToken Quoted(SqlTokenKind kind, int start, int quote, bool backslash)
    {
        var text = _text;
        var delimiter = text[quote];
        var i = quote + 1;
        while (i < text.Length)
        {
            var b = text[i];
            if (b == '\\' && backslash)
            {
                i += 2;
            }
            else if (b == delimiter)
            {
                if (At(i + 1) != delimiter)
                    return new SqlToken(kind, start, i + 1 - start);
                i += 2;
            }
            else
            {
                i++;
            }
        }
        return new SqlToken(kind, start, text.Length - start, Flags: SqlTokenFlags.Unterminated);
    }

    // PostgreSQL: $1 parameter, $$…$$ or $tag$…$tag$ dollar quote, or a lone '$'.
    private readonly SqlToken Dollar(int pos)
    {
        var text = _text;
        if (IsDigit(At(pos + 1)))
        {
            var end = pos + 1;
            while (IsDigit(At(end)))
                end++;
            return new SqlToken(SqlTokenKind.Parameter, pos, end - pos);
        }
        var tagEnd = pos + 1;
        if (IsIdentifierStart(At(tagEnd)))
        {
            while (IsIdentifierStart(At(tagEnd)) || IsDigit(At(tagEnd)))
                tagEnd++;
        }
        if (At(tagEnd) != '$')
            return new SqlToken(SqlTokenKind.Operator, pos, 1);
        var tag = text[pos..(tagEnd + 1)];
        var bodyStart = tagEnd + 1;
        var close = text[bodyStart..].IndexOf(tag);
        return close < 0
            ? new SqlToken(SqlTokenKind.String, pos, text.Length - pos, Flags: SqlTokenFlags.Unterminated)
            : new SqlToken(SqlTokenKind.String, pos, bodyStart + close + tag.Length - pos);
    }

    // MySQL @user_var, @'quoted', @@system_var (the scope prefix, as in @@session.x, ends at the dot).
    private readonly SqlToken Variable(int pos)
    {
        var next = At(pos + 1);
        if (next == '@')
        {
            var end = pos + 2;
            while (IsIdentifierPart(At(end)))
                end++;
            return new SqlToken(SqlTokenKind.Variable, pos, end - pos, Flags: SqlTokenFlags.SystemVariable);
        }
        if (next is (byte)'\'' or (byte)'"' or (byte)'`')
        {
            var quoted = Quoted(SqlTokenKind.Variable, pos, pos + 1, backslash: next != '`' && PlainStringEscapes());
            return quoted;
        }
        var i = pos + 1;
        while (IsIdentifierPart(At(i)) || At(i) == '.')
            i++;
        return i == pos + 1 ? new SqlToken(SqlTokenKind.Operator, pos, 1) : new SqlToken(SqlTokenKind.Variable, pos, i - pos);
    }

    private readonly SqlToken Number(int pos)
    {
        var pg = _dialect == SqlDialect.PostgreSql;
        var i = pos;
        var radix = (At(i + 1) | 0x20) switch
        {
            'x' => 16,
            'b' => 2,
            'o' when pg => 8,
            _ => 10,
        };
        if (At(i) == '0' && radix != 10 && IsDigitOf(At(i + 2), radix))
        {
            i += 2;
            while (IsDigitOf(At(i), radix) || (pg && At(i) == '_' && IsDigitOf(At(i + 1), radix)))
                i++;
        }
        else
        {
            i = Digits(i);
            if (At(i) == '.' && !(pg && At(i + 1) == '.'))
                i = Digits(i + 1);
            if ((At(i) | 0x20) == 'e')
            {
                var sign = At(i + 1) is (byte)'+' or (byte)'-' ? 1 : 0;
                if (IsDigit(At(i + 1 + sign)))
                    i = Digits(i + 1 + sign);
            }
        }
        if (!pg && IsIdentifierPart(At(i)))
        {
            // MySQL identifiers may begin with digits (1abc, 0xZZ): the whole run is a word.
            while (IsIdentifierPart(At(i)))
                i++;
            return new SqlToken(SqlTokenKind.Word, pos, i - pos, SqlKeywords.Lookup(_text[pos..i]));
        }
        return new SqlToken(SqlTokenKind.Number, pos, i - pos);
    }

    private readonly int Digits(int i)
    {
        var pg = _dialect == SqlDialect.PostgreSql;
        while (IsDigit(At(i)) || (pg && At(i) == '_' && IsDigit(At(i + 1)) && i > 0 && IsDigit(At(i - 1))))
            i++;
        return i;
    }

    private readonly SqlToken WordOrPrefixedString(int pos, byte c)
    {
        var next = At(pos + 1);
        var lower = c | 0x20;
        if (next == '\'')
        {
            if (_dialect == SqlDialect.PostgreSql)
            {
                if (lower == 'e')
                    return Quoted(SqlTokenKind.String, pos, pos + 1, backslash: true);
                if (lower is 'b' or 'x')
                    return Quoted(SqlTokenKind.String, pos, pos + 1, backslash: false);
                if (lower == 'n')
                    return Quoted(SqlTokenKind.String, pos, pos + 1, PlainStringEscapes());
            }
            else
            {
                if (lower is 'b' or 'x')
                    return Quoted(SqlTokenKind.String, pos, pos + 1, backslash: false);
                if (lower == 'n')
                    return Quoted(SqlTokenKind.String, pos, pos + 1, PlainStringEscapes());
            }
        }
        else if (lower == 'u' && next == '&' && _dialect == SqlDialect.PostgreSql)
        {
            var quote = At(pos + 2);
            if (quote == '\'')
                return Quoted(SqlTokenKind.String, pos, pos + 2, backslash: false);
            if (quote == '"')
                return Quoted(SqlTokenKind.QuotedIdentifier, pos, pos + 2, backslash: false);
        }
        var end = pos + 1;
        while (IsIdentifierPart(At(end)))
            end++;
        return new SqlToken(SqlTokenKind.Word, pos, end - pos, SqlKeywords.Lookup(_text[pos..end]));
    }

    private readonly SqlToken PgOperator(int pos)
    {
        var text = _text;
        if (!IsPgOperatorChar(text[pos]))
            return new SqlToken(SqlTokenKind.Operator, pos, 1);
        var end = pos + 1;
        while (end < text.Length && IsPgOperatorChar(text[end]))
        {
            // A comment start ends the operator.
            if ((text[end] == '-' && At(end + 1) == '-') || (text[end] == '/' && At(end + 1) == '*'))
                break;
            end++;
        }
        var length = end - pos;
        if (length > 1)
        {
            // PostgreSQL: a multi-character operator ends in + or - only if it holds one of ~ ! @ # % ^ & | ` ?
            // (so that "=-1" is "=" then "-1").
            var special = false;
            for (var i = pos; i < end && !special; i++)
                special = text[i] is (byte)'~' or (byte)'!' or (byte)'@' or (byte)'#' or (byte)'%' or (byte)'^' or (byte)'&' or (byte)'|' or (byte)'`' or (byte)'?';
            if (!special)
            {
                while (length > 1 && text[pos + length - 1] is (byte)'+' or (byte)'-')
                    length--;
            }
        }
        return new SqlToken(SqlTokenKind.Operator, pos, length);
    }

    private readonly SqlToken MySqlOperator(int pos)
    {
        var a = At(pos);
        var b = At(pos + 1);
        var c = At(pos + 2);
        if ((a == '<' && b == '=' && c == '>') || (a == '-' && b == '>' && c == '>'))
            return new SqlToken(SqlTokenKind.Operator, pos, 3);
        var two = (a, b) switch
        {
            ((byte)'<', (byte)'=') or ((byte)'>', (byte)'=') or ((byte)'<', (byte)'>') or ((byte)'!', (byte)'=') => true,
            ((byte)'|', (byte)'|') or ((byte)'&', (byte)'&') or ((byte)'<', (byte)'<') or ((byte)'>', (byte)'>') or ((byte)'-', (byte)'>') => true,
            _ => false,
        };
        return new SqlToken(SqlTokenKind.Operator, pos, two ? 2 : 1);
    }

    private static bool IsWhitespace(byte b) => b is (byte)' ' or (byte)'\t' or (byte)'\n' or (byte)'\r' or (byte)'\f' or (byte)'\v';

    private static bool IsDigit(byte b) => (uint)(b - '0') <= 9;

    private static bool IsDigitOf(byte b, int radix) => radix switch
    {
        16 => IsDigit(b) || (uint)((b | 0x20) - 'a') <= 5,
        8 => (uint)(b - '0') <= 7,
        2 => b is (byte)'0' or (byte)'1',
        _ => IsDigit(b),
    };

    /// <summary>Letters, underscore and any non-ASCII byte (UTF-8 letters of either dialect).</summary>
    internal static bool IsIdentifierStart(byte b) => (uint)((b | 0x20) - 'a') <= 'z' - 'a' || b == '_' || b >= 0x80;

    internal static bool IsIdentifierPart(byte b) => IsIdentifierStart(b) || IsDigit(b) || b == '$';

    private static bool IsPgOperatorChar(byte b) => b is (byte)'~' or (byte)'!' or (byte)'@' or (byte)'#' or (byte)'^' or (byte)'&' or (byte)'|'
        or (byte)'`' or (byte)'?' or (byte)'+' or (byte)'-' or (byte)'*' or (byte)'/' or (byte)'%' or (byte)'<' or (byte)'>' or (byte)'=';
}
