namespace MProxy.Edge.Routing;

internal enum SqlTokenKind : byte
{
    /// <summary>No token: the end of the text.</summary>
    End = 0,

    /// <summary>An unquoted identifier or keyword (<see cref="SqlToken.Keyword"/> says which keyword, if any).</summary>
    Word,

    /// <summary>"…" (PostgreSQL, MySQL ANSI_QUOTES), U&amp;"…" (PostgreSQL), `…` (MySQL).</summary>
    QuotedIdentifier,

    /// <summary>'…', E'…', B'…', X'…', N'…', U&amp;'…', $tag$…$tag$ (PostgreSQL); '…', "…", X'…', B'…', N'…' (MySQL).</summary>
    String,

    /// <summary>42, 4.2, .5, 1e-3, 0x1F, 0b101, 0o17.</summary>
    Number,

    /// <summary>$1 (PostgreSQL), ? (MySQL).</summary>
    Parameter,

    /// <summary>MySQL @name, @'name', @@name (flag <see cref="SqlTokenFlags.SystemVariable"/>).</summary>
    Variable,

    /// <summary>Any operator, including :: and :=; unknown bytes come out as one-byte operators.</summary>
    Operator,
    LeftParen,
    RightParen,
    LeftBracket,
    RightBracket,
    Comma,
    Semicolon,
    Dot,

    /// <summary>-- … or (MySQL) # …, up to the end of the line.</summary>
    LineComment,

    /// <summary>/* … */ (nested in PostgreSQL). MySQL /*! … */ is code, not a comment: its content is lexed.</summary>
    BlockComment,
}

[Flags]
internal enum SqlTokenFlags : byte
{
    None = 0,

    /// <summary>The string, identifier or comment reached the end of the text before its closing delimiter.</summary>
    Unterminated = 1,

    /// <summary>A MySQL system variable (@@name), not a user variable.</summary>
    SystemVariable = 2,
}

/// <summary>One token: a kind and a range of the text; no copy of the bytes.</summary>
internal readonly record struct SqlToken(SqlTokenKind Kind, int Start, int Length, SqlKeyword Keyword = SqlKeyword.None, SqlTokenFlags Flags = SqlTokenFlags.None)
{
    public int End => Start + Length;

    public bool IsUnterminated => (Flags & SqlTokenFlags.Unterminated) != 0;

    public bool IsComment => Kind is SqlTokenKind.LineComment or SqlTokenKind.BlockComment;

    /// <summary>Whether this is the unquoted keyword <paramref name="keyword"/>.</summary>
    public bool Is(SqlKeyword keyword) => Kind == SqlTokenKind.Word && Keyword == keyword;

    public ReadOnlySpan<byte> Slice(ReadOnlySpan<byte> text) => text.Slice(Start, Length);
}
