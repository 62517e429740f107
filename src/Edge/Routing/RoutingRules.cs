using System.Text;

namespace MProxy.Edge.Routing;

/// <summary>
/// The immutable inputs of classification besides the text: which functions write, and the
/// session settings that change how the text lexes. A reload builds a new instance; a query reads
/// one instance from start to end.
/// </summary>
public sealed record RoutingRules
{
    /// <summary>
    /// Functions whose call makes an otherwise read-only statement a write: they change state
    /// (sequences, advisory and named locks, large objects, settings) or must see the primary's
    /// transaction state. The brief's PostgreSQL list plus the shared/try advisory-lock variants and
    /// MySQL's named locks.
    /// </summary>
    public static readonly IReadOnlyList<string> DefaultWriteFunctions =
    [
        "nextval",
        "setval",
        "pg_advisory_lock",
        "pg_advisory_lock_shared",
        "pg_advisory_xact_lock",
        "pg_advisory_xact_lock_shared",
        "pg_try_advisory_lock",
        "pg_try_advisory_lock_shared",
        "pg_try_advisory_xact_lock",
        "pg_try_advisory_xact_lock_shared",
        "pg_advisory_unlock",
        "pg_advisory_unlock_shared",
        "pg_advisory_unlock_all",
        "lo_create",
        "lo_import",
        "txid_current",
        "pg_current_xact_id",
        "set_config",
        "dblink_exec",
        "get_lock",
        "release_lock",
        "release_all_locks",
    ];

    private static readonly FunctionNameSet DefaultWriteFunctionSet = FunctionNameSet.Create(DefaultWriteFunctions);

    /// <summary>Defaults: the default write functions, standard-conforming strings, MySQL's default sql_mode.</summary>
    public static RoutingRules Default { get; } = new();

    private readonly IReadOnlyList<string> _writeFunctions = DefaultWriteFunctions;

    /// <summary>
    /// Write functions, matched ASCII case-insensitively. A plain name (<c>nextval</c>) matches
    /// however the call is qualified (<c>pg_catalog.nextval</c>); a qualified one
    /// (<c>billing.allocate_id</c>) matches only with that schema.
    /// </summary>
    /// <exception cref="ArgumentException">a name is empty or not an identifier, optionally qualified by one schema.</exception>
    public IReadOnlyList<string> WriteFunctions
    {
        get => _writeFunctions;
        init
        {
            ArgumentNullException.ThrowIfNull(value);
            WriteFunctionSet = FunctionNameSet.Create(value);
            _writeFunctions = value;
        }
    }

    /// <summary>PostgreSQL standard_conforming_strings; when off, plain '…' strings honour backslash escapes.</summary>
    public bool StandardConformingStrings { get; init; } = true;

    /// <summary>MySQL sql_mode NO_BACKSLASH_ESCAPES: backslash is an ordinary character in strings.</summary>
    public bool MySqlNoBackslashEscapes { get; init; }

    /// <summary>MySQL sql_mode ANSI_QUOTES: "…" quotes an identifier, not a string.</summary>
    public bool MySqlAnsiQuotes { get; init; }

    internal FunctionNameSet WriteFunctionSet { get; private init; } = DefaultWriteFunctionSet;

    /// <summary>Value equality, the write functions included (a record compares lists by reference).</summary>
    public bool Equals(RoutingRules? other) =>
        other is not null && (ReferenceEquals(this, other) ||
            _writeFunctions.SequenceEqual(other._writeFunctions, StringComparer.Ordinal) && StandardConformingStrings == other.StandardConformingStrings
            && MySqlNoBackslashEscapes == other.MySqlNoBackslashEscapes && MySqlAnsiQuotes == other.MySqlAnsiQuotes);

    public override int GetHashCode() => HashCode.Combine(_writeFunctions.Count, StandardConformingStrings, MySqlNoBackslashEscapes, MySqlAnsiQuotes);

    internal SqlLexerOptions LexerOptions(SqlDialect dialect) => dialect switch
    {
        SqlDialect.PostgreSql => StandardConformingStrings ? SqlLexerOptions.None : SqlLexerOptions.BackslashInPlainStrings,
        _ => (MySqlNoBackslashEscapes ? SqlLexerOptions.NoBackslashEscapes : SqlLexerOptions.None)
            | (MySqlAnsiQuotes ? SqlLexerOptions.AnsiQuotes : SqlLexerOptions.None),
    };
}

/// <summary>A compiled list of function names, each optionally schema-qualified, matched without allocating.</summary>
internal sealed class FunctionNameSet
{
    private readonly byte[][] _names;
    private readonly byte[]?[] _schemas;

    private FunctionNameSet(byte[][] names, byte[]?[] schemas)
    {
        _names = names;
        _schemas = schemas;
    }

    public int Count => _names.Length;

    /// <exception cref="ArgumentException">a name is not <c>[schema.]identifier</c>.</exception>
    public static FunctionNameSet Create(IReadOnlyList<string> names)
    {
        var compiled = new byte[names.Count][];
        var schemas = new byte[]?[names.Count];
        for (var i = 0; i < names.Count; i++)
        {
            var name = names[i];
            if (!IsValid(name))
                throw new ArgumentException($"'{name}' is not a function name ([schema.]identifier of letters, digits, '_' or '$')", nameof(names));
            var lower = Encoding.ASCII.GetBytes(name.ToLowerInvariant());
            var dot = Array.IndexOf(lower, (byte)'.');
            if (dot < 0)
            {
                compiled[i] = lower;
            }
            else
            {
                schemas[i] = lower[..dot];
                compiled[i] = lower[(dot + 1)..];
            }
        }
        return new FunctionNameSet(compiled, schemas);
    }

    /// <summary>Whether a call of <paramref name="schema"/>.<paramref name="name"/> (schema empty when unqualified) is in the set.</summary>
    public bool Contains(ReadOnlySpan<byte> schema, ReadOnlySpan<byte> name)
    {
        var names = _names;
        for (var i = 0; i < names.Length; i++)
        {
            if (names[i].Length != name.Length || !Ascii.EqualsIgnoreCase(names[i], name))
                continue;
            var requiredSchema = _schemas[i];
            if (requiredSchema is null || Ascii.EqualsIgnoreCase(requiredSchema, schema))
                return true;
        }
        return false;
    }

    private static bool IsValid(string? name)
    {
        if (string.IsNullOrEmpty(name) || name.Length > 127)
            return false;
        var dots = 0;
        for (var i = 0; i < name.Length; i++)
        {
            var c = name[i];
            if (c == '.')
            {
                if (++dots > 1 || i == 0 || i == name.Length - 1)
                    return false;
            }
            else if (!(char.IsAsciiLetterOrDigit(c) || c == '_' || c == '$'))
            {
                return false;
            }
        }
        return true;
    }
}
