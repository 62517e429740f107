using System.Diagnostics;

namespace MProxy.Edge.Routing;

/// <summary>
/// The classifier's view of the lexer: significant tokens only, one token of lookahead, and the
/// comments it skips handed to a <see cref="HintBuilder"/>. A copy is an independent lookahead.
/// </summary>
internal ref struct TokenCursor
{
    private readonly bool _collectHints;
    private SqlLexer _lexer;
    private SqlToken _peeked;
    private bool _hasPeeked;
    private HintBuilder _hints;

    public TokenCursor(ReadOnlySpan<byte> text, SqlDialect dialect, SqlLexerOptions options, bool collectHints)
    {
        _lexer = new SqlLexer(text, dialect, options);
        _collectHints = collectHints;
    }

    public readonly ReadOnlySpan<byte> Text => _lexer.Text;

    public readonly SqlDialect Dialect => _lexer.Dialect;

    public readonly bool HadUnterminated => _lexer.HadUnterminated;

    public readonly QueryHints BuildHints() => _hints.Build();

    public bool Next(out SqlToken token)
    {
        if (_hasPeeked)
        {
            _hasPeeked = false;
            token = _peeked;
            return token.Kind != SqlTokenKind.End;
        }
        return Read(out token);
    }

    /// <summary>The next token without consuming it; <see cref="SqlTokenKind.End"/> at the end.</summary>
    public SqlToken Peek()
    {
        if (!_hasPeeked)
        {
            Read(out _peeked);
            _hasPeeked = true;
        }
        return _peeked;
    }

    /// <summary>Consumes the next token if it is the keyword <paramref name="keyword"/>.</summary>
    public bool TryAccept(SqlKeyword keyword)
    {
        if (!Peek().Is(keyword))
            return false;
        _hasPeeked = false;
        return true;
    }

    /// <summary>Consumes the next token if it is of kind <paramref name="kind"/>.</summary>
    public bool TryAccept(SqlTokenKind kind, out SqlToken token)
    {
        token = Peek();
        if (token.Kind != kind || kind == SqlTokenKind.End)
            return false;
        _hasPeeked = false;
        return true;
    }

    /// <summary>Returns a token just taken with <see cref="Next"/> so that it is read again.</summary>
    public void PushBack(in SqlToken token)
    {
        Debug.Assert(!_hasPeeked, "only the token just read can be pushed back");
        _peeked = token;
        _hasPeeked = true;
    }

    private bool Read(out SqlToken token)
    {
        while (_lexer.Next(out token))
        {
            if (!token.IsComment)
                return true;
            if (_collectHints)
                _hints.AddComment(_lexer.Text, token);
        }
        token = default;
        return false;
    }
}
