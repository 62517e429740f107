using System.Globalization;

namespace MProxy.Edge.Backends;

/// <summary>
/// A PostgreSQL write-ahead-log position (<c>pg_lsn</c>): a 64-bit byte offset into the WAL, written
/// as two hexadecimal halves <c>X/Y</c> (high and low 32 bits). Positions compare as unsigned
/// numbers and their difference is a number of WAL bytes. <see cref="None"/> (0/0) is "unknown".
/// </summary>
public readonly record struct Lsn(ulong Value) : IComparable<Lsn>
{
    /// <summary>0/0: no position (PostgreSQL's InvalidXLogRecPtr).</summary>
    public static readonly Lsn None;

    public bool IsNone => Value == 0;

    /// <summary>Parses <c>X/Y</c> (1–8 hex digits each side, either case).</summary>
    /// <exception cref="FormatException">the text is not an LSN.</exception>
    public static Lsn Parse(ReadOnlySpan<char> text) =>
        TryParse(text, out var lsn) ? lsn : throw new FormatException($"'{text}' is not an LSN (expected X/Y in hexadecimal)");

    public static bool TryParse(ReadOnlySpan<char> text, out Lsn lsn)
    {
        lsn = None;
        var slash = text.IndexOf('/');
        if (slash is < 1 or > 8 || text.Length - slash - 1 is < 1 or > 8)
            return false;
        if (!TryParseHex(text[..slash], out var high) || !TryParseHex(text[(slash + 1)..], out var low))
            return false;
        lsn = new Lsn(((ulong)high << 32) | low);
        return true;
    }

    /// <summary>Parses the ASCII bytes of <c>X/Y</c>, as a text-format DataRow column carries them.</summary>
    public static bool TryParse(ReadOnlySpan<byte> ascii, out Lsn lsn)
    {
        lsn = None;
        if (ascii.Length > 17)
            return false;
        Span<char> chars = stackalloc char[ascii.Length];
        for (var i = 0; i < ascii.Length; i++)
            chars[i] = (char)ascii[i];
        return TryParse(chars, out lsn);
    }

    private static bool TryParseHex(ReadOnlySpan<char> digits, out uint value)
    {
        // NumberStyles.HexNumber alone would accept surrounding white space.
        foreach (var c in digits)
        {
            if (!char.IsAsciiHexDigit(c))
            {
                value = 0;
                return false;
            }
        }
        return uint.TryParse(digits, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out value);
    }

    /// <summary>WAL bytes from <paramref name="older"/> up to this position; 0 when this one is not ahead.</summary>
    public long BytesAfter(Lsn older) => Value > older.Value ? (long)Math.Min(Value - older.Value, long.MaxValue) : 0;

    public int CompareTo(Lsn other) => Value.CompareTo(other.Value);

    public static Lsn Max(Lsn a, Lsn b) => a.Value >= b.Value ? a : b;

    public static bool operator <(Lsn left, Lsn right) => left.Value < right.Value;

    public static bool operator >(Lsn left, Lsn right) => left.Value > right.Value;

    public static bool operator <=(Lsn left, Lsn right) => left.Value <= right.Value;

    public static bool operator >=(Lsn left, Lsn right) => left.Value >= right.Value;

    /// <summary>PostgreSQL's spelling: upper-case hex without leading zeros, <c>16/B374D848</c>.</summary>
    public override string ToString() =>
        string.Create(CultureInfo.InvariantCulture, $"{(uint)(Value >> 32):X}/{(uint)Value:X}");
}
