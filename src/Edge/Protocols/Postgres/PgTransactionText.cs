using System.Text;

namespace MProxy.Edge.Protocols.Postgres;

/// <summary>What a simple Query's text is, for the edge's deferred BEGIN (<see cref="PgTransactionText"/>).</summary>
internal enum PgTransactionCommand : byte
{
    /// <summary>Anything else — including transaction control the edge leaves to the server.</summary>
    Other,

    /// <summary><c>BEGIN [WORK | TRANSACTION] [modes]</c>, with modes a healthy server cannot refuse; its tag is BEGIN.</summary>
    Begin,

    /// <summary><c>START TRANSACTION [modes]</c>, modes as for <see cref="Begin"/>; its tag is START TRANSACTION.</summary>
    StartTransaction,

    /// <summary><c>COMMIT</c> or <c>END</c> [WORK | TRANSACTION], without AND CHAIN.</summary>
    Commit,

    /// <summary><c>ROLLBACK</c> or <c>ABORT</c> [WORK | TRANSACTION], without AND CHAIN or TO SAVEPOINT.</summary>
    Rollback,
}

/// <summary>
/// Reads the few query texts the edge answers itself when it defers a client's BEGIN: one
/// statement of keywords only (any letter case, whitespace between them, an optional final
/// semicolon). Anything else — a comment, a second statement, AND CHAIN, a mode the server could
/// refuse — is <see cref="PgTransactionCommand.Other"/> and goes to the server as usual.
/// </summary>
/// <remarks>
/// The modes accepted on BEGIN are those no server in service refuses: ISOLATION LEVEL READ
/// COMMITTED / REPEATABLE READ / READ UNCOMMITTED, READ ONLY, [NOT] DEFERRABLE, each at most once.
/// SERIALIZABLE and READ WRITE are refused by a server in recovery (a hot standby), so a BEGIN with
/// them is sent at once: a deferred BEGIN's own failure would surface only with the statement behind
/// it, which would then have run outside the transaction.
/// </remarks>
internal static class PgTransactionText
{
    /// <summary>The longest text read (longer ones are <see cref="PgTransactionCommand.Other"/>).</summary>
    public const int MaxLength = 128;

    /// <summary>
    /// A first look at a text's first two bytes: false when it cannot be one of the commands (most
    /// statements: SELECT, INSERT, UPDATE…), so that the caller need not copy it to classify it.
    /// </summary>
    public static bool MayBeOne(ReadOnlySpan<byte> start)
    {
        if (start.Length < 2 || IsSpace(start[0]))
            return true;
        return ((start[0] | 0x20) << 8 | (start[1] | 0x20)) switch
        {
            'b' << 8 | 'e' or 's' << 8 | 't' or 'c' << 8 | 'o' or 'e' << 8 | 'n' or 'r' << 8 | 'o' or 'a' << 8 | 'b' => true,
            _ => false,
        };
    }

    /// <summary>What <paramref name="text"/> (a simple Query's text, without its terminating NUL) is.</summary>
    public static PgTransactionCommand Classify(ReadOnlySpan<byte> text)
    {
        if (text.Length > MaxLength)
            return PgTransactionCommand.Other;
        var c = new Words(text);
        var first = c.Next();
        if (Is(first, "BEGIN"u8))
        {
            var word = c.Next();
            if (Is(word, "WORK"u8) || Is(word, "TRANSACTION"u8))
                word = c.Next();
            return Modes(ref c, word) ? PgTransactionCommand.Begin : PgTransactionCommand.Other;
        }
        if (Is(first, "START"u8))
            return Is(c.Next(), "TRANSACTION"u8) && Modes(ref c, c.Next()) ? PgTransactionCommand.StartTransaction : PgTransactionCommand.Other;
        if (Is(first, "COMMIT"u8) || Is(first, "END"u8))
            return EndsPlainly(ref c) ? PgTransactionCommand.Commit : PgTransactionCommand.Other;
        if (Is(first, "ROLLBACK"u8) || Is(first, "ABORT"u8))
            return EndsPlainly(ref c) ? PgTransactionCommand.Rollback : PgTransactionCommand.Other;
        return PgTransactionCommand.Other;
    }

    /// <summary>The command tag the server would answer <paramref name="command"/> with (a COMMIT of a failed transaction answers ROLLBACK).</summary>
    public static string Tag(PgTransactionCommand command, bool failed) => command switch
    {
        PgTransactionCommand.Begin => "BEGIN",
        PgTransactionCommand.StartTransaction => "START TRANSACTION",
        PgTransactionCommand.Commit when !failed => "COMMIT",
        _ => "ROLLBACK",
    };

    // [WORK | TRANSACTION], then the end.
    private static bool EndsPlainly(ref Words c)
    {
        var word = c.Next();
        if (Is(word, "WORK"u8) || Is(word, "TRANSACTION"u8))
            word = c.Next();
        return word.IsEmpty && c.Clean;
    }

    // mode [[,] mode]… from `word` to the end; each kind of mode at most once.
    private static bool Modes(ref Words c, ReadOnlySpan<byte> word)
    {
        bool isolation = false, access = false, deferrable = false;
        while (!word.IsEmpty)
        {
            if (Is(word, "ISOLATION"u8))
            {
                if (isolation || !Is(c.Next(), "LEVEL"u8))
                    return false;
                var level = c.Next();
                if (Is(level, "REPEATABLE"u8))
                {
                    if (!Is(c.Next(), "READ"u8))
                        return false;
                }
                else if (!Is(level, "READ"u8) || !(Is(c.Next(), "COMMITTED"u8) || Is(c.Current, "UNCOMMITTED"u8)))
                {
                    return false; // SERIALIZABLE too: see the remarks
                }
                isolation = true;
            }
            else if (Is(word, "READ"u8))
            {
                if (access || !Is(c.Next(), "ONLY"u8))
                    return false; // READ WRITE too: see the remarks
                access = true;
            }
            else if (Is(word, "NOT"u8) || Is(word, "DEFERRABLE"u8))
            {
                if (deferrable || (Is(word, "NOT"u8) && !Is(c.Next(), "DEFERRABLE"u8)))
                    return false;
                deferrable = true;
            }
            else
            {
                return false;
            }
            word = c.Next();
            if (word.Length == 1 && word[0] == (byte)',')
            {
                word = c.Next();
                if (word.IsEmpty)
                    return false;
            }
        }
        return c.Clean;
    }

    private static bool Is(ReadOnlySpan<byte> word, ReadOnlySpan<byte> keyword) =>
        word.Length == keyword.Length && Ascii.EqualsIgnoreCase(word, keyword);

    /// <summary>Words of ASCII letters and lone commas; an empty word is the end (or, unless <see cref="Clean"/>, something else).</summary>
    private ref struct Words(ReadOnlySpan<byte> text)
    {
        private readonly ReadOnlySpan<byte> _text = text;
        private int _at;

        /// <summary>The last word <see cref="Next"/> returned.</summary>
        public ReadOnlySpan<byte> Current { get; private set; }

        /// <summary>False once a character other than a letter, a comma, whitespace or a final semicolon was met.</summary>
        public bool Clean { get; private set; } = true;

        public ReadOnlySpan<byte> Next()
        {
            while (_at < _text.Length && IsSpace(_text[_at]))
                _at++;
            if (_at == _text.Length)
                return Current = default;
            var start = _at;
            var b = _text[_at];
            if (b == (byte)',')
            {
                _at++;
                return Current = _text.Slice(start, 1);
            }
            if (b == (byte)';')
            {
                // A final semicolon: only whitespace may follow.
                _at++;
                while (_at < _text.Length && IsSpace(_text[_at]))
                    _at++;
                Clean = _at == _text.Length;
                return Current = default;
            }
            while (_at < _text.Length && char.IsAsciiLetter((char)_text[_at]))
                _at++;
            if (_at == start)
            {
                Clean = false;
                _at = _text.Length;
                return Current = default;
            }
            return Current = _text[start.._at];
        }

    }

    private static bool IsSpace(byte b) => b is (byte)' ' or (byte)'\t' or (byte)'\n' or (byte)'\r' or (byte)'\f';
}
