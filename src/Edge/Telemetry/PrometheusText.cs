using System.Globalization;
using System.Text;

namespace MProxy.Edge.Telemetry;

/// <summary>The lexical rules of the Prometheus text exposition format: names, escaping, numbers.</summary>
internal static class PrometheusText
{
    /// <summary>
    /// The Prometheus name of an instrument: dots become underscores, the unit is appended
    /// (<c>s</c> → <c>_seconds</c>, <c>By</c> → <c>_bytes</c>; annotations like <c>{query}</c> add
    /// nothing), and counters end in <c>_total</c>.
    /// </summary>
    public static string MetricName(string instrument, string? unit, bool counter)
    {
        var name = Sanitize(instrument);
        var suffix = unit switch
        {
            "s" => "_seconds",
            "ms" => "_milliseconds",
            "By" => "_bytes",
            "RU" => "_ru",
            _ => "",
        };
        if (suffix.Length > 0 && !name.EndsWith(suffix, StringComparison.Ordinal))
            name += suffix;
        if (counter && !name.EndsWith("_total", StringComparison.Ordinal))
            name += "_total";
        return name;
    }

    /// <summary>Replaces characters outside <c>[a-zA-Z0-9_:]</c> with '_' (and a leading digit).</summary>
    public static string Sanitize(string name)
    {
        var chars = name.ToCharArray();
        for (var i = 0; i < chars.Length; i++)
        {
            var c = chars[i];
            var ok = c is (>= 'a' and <= 'z') or (>= 'A' and <= 'Z') or '_' or ':' || (c is >= '0' and <= '9' && i > 0);
            if (!ok)
                chars[i] = '_';
        }
        return chars.Length == 0 ? "_" : new string(chars);
    }

    /// <summary>Label names may not contain ':' either.</summary>
    public static string SanitizeLabel(string name) => Sanitize(name).Replace(':', '_');

    /// <summary><c>{a="x",b="y"}</c> with an optional extra label last (histogram buckets' <c>le</c>); nothing when empty.</summary>
    public static void AppendLabels(StringBuilder text, KeyValuePair<string, string>[] labels, string? extraName, string? extraValue)
    {
        if (labels.Length == 0 && extraName is null)
            return;
        text.Append('{');
        var first = true;
        foreach (var (name, value) in labels)
        {
            if (!first)
                text.Append(',');
            first = false;
            text.Append(SanitizeLabel(name)).Append("=\"");
            AppendLabelValue(text, value);
            text.Append('"');
        }
        if (extraName is not null)
        {
            if (!first)
                text.Append(',');
            text.Append(extraName).Append("=\"");
            AppendLabelValue(text, extraValue ?? "");
            text.Append('"');
        }
        text.Append('}');
    }

    /// <summary>Label values escape backslash, double quote and line feed.</summary>
    public static void AppendLabelValue(StringBuilder text, string value) => AppendEscaped(text, value, escapeQuote: true);

    /// <summary>HELP text escapes backslash and line feed.</summary>
    public static void AppendHelp(StringBuilder text, string help) => AppendEscaped(text, help, escapeQuote: false);

    private static void AppendEscaped(StringBuilder text, string value, bool escapeQuote)
    {
        foreach (var c in value)
        {
            switch (c)
            {
                case '\\':
                    text.Append("\\\\");
                    break;
                case '"' when escapeQuote:
                    text.Append("\\\"");
                    break;
                case '\n':
                    text.Append("\\n");
                    break;
                default:
                    text.Append(c);
                    break;
            }
        }
    }

    public static void AppendValue(StringBuilder text, double value, bool integer)
    {
        if (integer && value is >= -9.007199254740992E15 and <= 9.007199254740992E15)
            text.Append(((long)value).ToString(CultureInfo.InvariantCulture));
        else
            text.Append(FormatDouble(value));
    }

    public static string FormatDouble(double value) => value switch
    {
        double.PositiveInfinity => "+Inf",
        double.NegativeInfinity => "-Inf",
        double.NaN => "NaN",
        _ => value.ToString("R", CultureInfo.InvariantCulture),
    };
}
