using System.Text;
using MProxy.Edge.Routing;

namespace MProxy.Edge.Protocols.MySql;

/// <summary>
/// The session variables the edge keeps consistent across pooled server connections instead of
/// pinning the client: the character-set family (SET NAMES, SET CHARACTER SET,
/// character_set_client/connection/results, collation_connection), time_zone and the session's
/// transaction characteristics (SET SESSION TRANSACTION …) — what drivers set at connect and around
/// transactions. An immutable, ordered list of assignments; <see cref="Text"/> replays it.
/// </summary>
internal sealed class MySqlSessionVariables
{
    private static readonly string[] Tracked =
    [
        "character_set_client", "character_set_connection", "character_set_results", "collation_connection", "time_zone",
    ];

    private readonly (string Name, string Assignment)[] _entries;

    public static readonly MySqlSessionVariables Default = new([]);

    private MySqlSessionVariables((string Name, string Assignment)[] entries)
    {
        _entries = entries;
        // SET SESSION TRANSACTION … cannot share a SET with assignments: it is a statement of its own.
        var statements = new List<string>();
        var assignments = new List<string>();
        foreach (var (name, assignment) in entries)
        {
            if (name == "transaction")
                statements.Add("SET " + assignment);
            else
                assignments.Add(assignment);
        }
        if (assignments.Count > 0)
            statements.Insert(0, "SET " + string.Join(", ", assignments));
        Text = string.Join("; ", statements);
    }

    /// <summary>A SET statement that recreates these values on a freshly reset connection; empty for the defaults.</summary>
    public string Text { get; }

    public bool IsDefault => _entries.Length == 0;

    /// <summary>These values after <paramref name="updates"/> (later assignments replace earlier ones of the same variable).</summary>
    public MySqlSessionVariables With(IReadOnlyList<(string Name, string Assignment)> updates)
    {
        var list = new List<(string Name, string Assignment)>(_entries);
        foreach (var update in updates)
        {
            switch (update.Name)
            {
                case "names":
                    list.RemoveAll(e => e.Name is "names" or "charset" or "character_set_client" or "character_set_connection" or "character_set_results" or "collation_connection");
                    break;
                case "charset":
                    list.RemoveAll(e => e.Name is "names" or "charset" or "character_set_client" or "character_set_connection" or "character_set_results");
                    break;
                default:
                    list.RemoveAll(e => e.Name == update.Name);
                    break;
            }
            list.Add(update);
        }
        return new MySqlSessionVariables([.. list]);
    }

    /// <summary>
    /// Parses a query that is one SET of tracked variables only (and <c>autocommit</c>, which the
    /// server's status flags track). False for anything else: user variables, GLOBAL, other
    /// variables, several statements — the caller then pins the client.
    /// </summary>
    public static bool TryParse(ReadOnlySpan<byte> sql, RoutingRules rules, out List<(string Name, string Assignment)> updates)
    {
        ArgumentNullException.ThrowIfNull(rules);
        updates = [];
        var lexer = new SqlLexer(sql, SqlDialect.MySql, rules.LexerOptions(SqlDialect.MySql));
        if (!lexer.NextSignificant(out var token) || !token.Is(SqlKeyword.Set))
            return false;
        while (true)
        {
            if (!lexer.NextSignificant(out token))
                return false;
            var itemStart = token.Start;
            var sessionScope = false;
            if (token.Is(SqlKeyword.Session) || token.Is(SqlKeyword.Local))
            {
                sessionScope = true;
                var scopeStart = token.Start;
                if (!lexer.NextSignificant(out token))
                    return false;
                itemStart = token.Is(SqlKeyword.Transaction) ? scopeStart : token.Start;
            }
            string name;
            if (token.Is(SqlKeyword.Transaction))
            {
                // SET TRANSACTION … applies to the next transaction only: neither tracked nor pinning.
                if (!sessionScope)
                    return true;
                name = "transaction";
            }
            else if (token.Is(SqlKeyword.Names))
            {
                name = "names";
            }
            else if (token.Is(SqlKeyword.Charset) || token.Is(SqlKeyword.Character))
            {
                if (token.Is(SqlKeyword.Character) && (!lexer.NextSignificant(out var set) || !set.Is(SqlKeyword.Set)))
                    return false;
                name = "charset";
            }
            else if (token.Kind == SqlTokenKind.Word || (token.Kind == SqlTokenKind.Variable && (token.Flags & SqlTokenFlags.SystemVariable) != 0))
            {
                var text = Encoding.ASCII.GetString(token.Slice(sql)).ToLowerInvariant().TrimStart('@');
                if (token.Kind == SqlTokenKind.Variable && text is "session" or "local" or "global")
                {
                    // @@session.name: the scope, a dot, then the name.
                    if (text == "global" || !lexer.NextSignificant(out var dot) || dot.Kind != SqlTokenKind.Dot || !lexer.NextSignificant(out token) || token.Kind != SqlTokenKind.Word)
                        return false;
                    text = Encoding.ASCII.GetString(token.Slice(sql)).ToLowerInvariant();
                }
                else if (text.StartsWith("session.", StringComparison.Ordinal))
                    text = text["session.".Length..];
                else if (text.StartsWith("local.", StringComparison.Ordinal))
                    text = text["local.".Length..];
                else if (text.Contains('.', StringComparison.Ordinal))
                    return false; // @@global.x
                if (text == "autocommit")
                    name = "autocommit";
                else if (Array.IndexOf(Tracked, text) >= 0)
                    name = text;
                else
                    return false;
            }
            else
            {
                return false;
            }

            // The value: tokens up to a comma outside parentheses, or the end.
            var depth = 0;
            var itemEnd = token.End;
            var more = false;
            while (lexer.NextSignificant(out token))
            {
                if (token.Kind == SqlTokenKind.Semicolon && depth == 0)
                {
                    if (lexer.NextSignificant(out _))
                        return false; // a second statement
                    break;
                }
                if (token.Kind == SqlTokenKind.Comma && depth == 0)
                {
                    more = true;
                    break;
                }
                if (token.Kind == SqlTokenKind.LeftParen)
                    depth++;
                else if (token.Kind == SqlTokenKind.RightParen)
                    depth--;
                else if (token.Kind == SqlTokenKind.Variable && (token.Flags & SqlTokenFlags.SystemVariable) == 0)
                    return false; // a user variable in the value
                itemEnd = token.End;
            }
            if (lexer.HadUnterminated)
                return false;
            if (name != "autocommit")
                updates.Add((name, Encoding.UTF8.GetString(sql[itemStart..itemEnd])));
            if (!more)
                return true;
        }
    }
}
