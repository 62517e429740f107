using System.Text;

namespace MProxy.Edge.Protocols.Postgres;

/// <summary>
/// The session parameters mproxy keeps consistent for each client although its server connection
/// changes: before a client's request runs on a server connection whose values differ, the edge
/// sends <c>SET</c>/<c>RESET</c> for the differing ones (one swallowed round trip, pipelined with
/// the request). Reported parameters come back as ParameterStatus, which keeps both sides' values
/// in the server's canonical spelling.
/// </summary>
internal static class PgTrackedParameters
{
    /// <summary>Canonical names, as PostgreSQL spells them in ParameterStatus.</summary>
    public static readonly string[] Names =
    [
        "client_encoding",
        "DateStyle",
        "IntervalStyle",
        "TimeZone",
        "standard_conforming_strings",
        "application_name",
        "search_path",
        "extra_float_digits",
    ];

    /// <summary>Whether the server reports the parameter with ParameterStatus (GUC_REPORT in PostgreSQL 15).</summary>
    private static readonly bool[] Reported = [true, true, true, true, true, true, false, false];

    public static int Count => Names.Length;

    /// <summary>The index of <c>application_name</c>.</summary>
    public static readonly int ApplicationName = IndexOf("application_name");

    /// <summary>The index of <c>standard_conforming_strings</c>.</summary>
    public static readonly int StandardConformingStrings = IndexOf("standard_conforming_strings");

    /// <summary>How many distinct values <see cref="Share"/> keeps.</summary>
    internal const int MaxSharedValues = 4096;

    private static readonly SharedStrings SharedValues = new(MaxSharedValues);

    /// <summary>
    /// One shared instance per distinct value, for storing in a tracked-parameter array: then the
    /// comparisons of <see cref="BuildSync"/> (every time a client gets a server connection) are
    /// reference checks rather than reads of both strings. Values come from logins and
    /// ParameterStatus, so the set is small; it is capped so that clients cannot grow it without
    /// bound (a value beyond the cap is only compared the slow way).
    /// </summary>
    public static string Share(string value) => SharedValues.Share(value);

    public static int IndexOf(string name)
    {
        for (var i = 0; i < Names.Length; i++)
            if (string.Equals(Names[i], name, StringComparison.OrdinalIgnoreCase))
                return i;
        return -1;
    }

    public static bool IsReported(int index) => Reported[index];

    /// <summary>
    /// Builds the statement that makes the server's values equal to the client's, or null when they
    /// already are. A null client value means "the server's default" (RESET).
    /// </summary>
    public static string? BuildSync(string?[] client, string?[] server)
    {
        StringBuilder? sql = null;
        for (var i = 0; i < Names.Length; i++)
        {
            if (string.Equals(client[i], server[i], StringComparison.Ordinal))
                continue;
            sql ??= new StringBuilder();
            if (client[i] is null)
                sql.Append("RESET ").Append(Names[i]).Append(';');
            else
                sql.Append("SET ").Append(Names[i]).Append(" TO ").Append(QuoteLiteral(client[i]!)).Append(';');
        }
        return sql?.ToString();
    }

    /// <summary>Quotes a string literal so that it is read back verbatim whatever standard_conforming_strings is.</summary>
    public static string QuoteLiteral(string value)
    {
        var escaped = value.Replace("'", "''", StringComparison.Ordinal);
        return value.Contains('\\', StringComparison.Ordinal)
            ? "E'" + escaped.Replace("\\", "\\\\", StringComparison.Ordinal) + "'"
            : "'" + escaped + "'";
    }

    /// <summary>
    /// Splits the startup <c>options</c> value (<c>-c name=value --name=value</c>, backslash escapes
    /// spaces) into name/value pairs.
    /// </summary>
    /// <exception cref="FormatException">an item is not a setting.</exception>
    public static List<KeyValuePair<string, string>> ParseOptions(string options)
    {
        var words = new List<string>();
        var current = new StringBuilder();
        for (var i = 0; i < options.Length; i++)
        {
            var c = options[i];
            if (c == '\\' && i + 1 < options.Length)
            {
                current.Append(options[++i]);
            }
            else if (char.IsWhiteSpace(c))
            {
                if (current.Length > 0)
                {
                    words.Add(current.ToString());
                    current.Clear();
                }
            }
            else
            {
                current.Append(c);
            }
        }
        if (current.Length > 0)
            words.Add(current.ToString());

        var result = new List<KeyValuePair<string, string>>();
        for (var i = 0; i < words.Count; i++)
        {
            string setting;
            if (words[i] == "-c" && i + 1 < words.Count)
                setting = words[++i];
            else if (words[i].StartsWith("-c", StringComparison.Ordinal) && words[i].Length > 2)
                setting = words[i][2..];
            else if (words[i].StartsWith("--", StringComparison.Ordinal))
                setting = words[i][2..];
            else
                throw new FormatException($"unsupported item '{words[i]}' in startup options");
            var eq = setting.IndexOf('=', StringComparison.Ordinal);
            if (eq <= 0)
                throw new FormatException($"startup option '{setting}' is not name=value");
            result.Add(new(setting[..eq].Replace('-', '_'), setting[(eq + 1)..]));
        }
        return result;
    }
}
