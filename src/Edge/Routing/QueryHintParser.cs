using System.Text;
using MProxy.Abstractions;

namespace MProxy.Edge.Routing;

/// <summary>
/// Reads magic comments: <c>/* mproxy: priority=low timeout=30s route=primary group=batch
/// traceparent=00-…-…-01 */</c> or <c>-- mproxy: …</c>, anywhere in the text (leading, or trailing
/// as sqlcommenter-style ORMs append them). Items are <c>key=value</c> separated by spaces or
/// commas; a value may be wrapped in single or double quotes. Unknown keys, malformed values and
/// items without '=' are ignored and counted in <see cref="QueryHints.Ignored"/>. Several mproxy
/// comments merge, the later item winning. Comments that do not start with <c>mproxy:</c> are not
/// hints, and neither is anything inside a string, quoted identifier or dollar quote (the lexer
/// never reports those as comments). An unterminated comment carries no hints.
/// </summary>
internal static class QueryHintParser
{
    /// <summary>Longest accepted timeout hint.</summary>
    public static readonly TimeSpan MaxTimeout = TimeSpan.FromHours(24);

    /// <summary>Longest accepted resource-group name.</summary>
    public const int MaxGroupLength = 63;

    /// <summary>Parses the hints of a whole text (a lexer pass that looks only at comments).</summary>
    public static QueryHints Parse(ReadOnlySpan<byte> sql, SqlDialect dialect, RoutingRules rules)
    {
        var lexer = new SqlLexer(sql, dialect, rules.LexerOptions(dialect));
        var hints = new HintBuilder();
        while (lexer.Next(out var token))
        {
            if (token.IsComment)
                hints.AddComment(sql, token);
        }
        return hints.Build();
    }

    internal static bool TryParsePriority(ReadOnlySpan<byte> value, out Priority priority)
    {
        if (Ascii.EqualsIgnoreCase(value, "high"u8))
            priority = Priority.High;
        else if (Ascii.EqualsIgnoreCase(value, "medium"u8))
            priority = Priority.Medium;
        else if (Ascii.EqualsIgnoreCase(value, "low"u8))
            priority = Priority.Low;
        else
        {
            priority = default;
            return false;
        }
        return true;
    }

    /// <summary><c>&lt;digits&gt;(ms|s|m|h)</c>, above zero and at most <see cref="MaxTimeout"/>.</summary>
    internal static bool TryParseTimeout(ReadOnlySpan<byte> value, out TimeSpan timeout)
    {
        timeout = default;
        var digits = 0;
        long amount = 0;
        while (digits < value.Length && (uint)(value[digits] - '0') <= 9)
        {
            if (digits == 9)
                return false;
            amount = (amount * 10) + (value[digits] - '0');
            digits++;
        }
        if (digits == 0)
            return false;
        var unit = value[digits..];
        long unitMs;
        if (Ascii.EqualsIgnoreCase(unit, "ms"u8))
            unitMs = 1;
        else if (Ascii.EqualsIgnoreCase(unit, "s"u8))
            unitMs = 1000;
        else if (Ascii.EqualsIgnoreCase(unit, "m"u8))
            unitMs = 60_000;
        else if (Ascii.EqualsIgnoreCase(unit, "h"u8))
            unitMs = 3_600_000;
        else
            return false;
        var ms = amount * unitMs;
        if (ms <= 0 || ms > (long)MaxTimeout.TotalMilliseconds)
            return false;
        timeout = TimeSpan.FromMilliseconds(ms);
        return true;
    }

    internal static bool IsValidGroup(ReadOnlySpan<byte> value)
    {
        if (value.IsEmpty || value.Length > MaxGroupLength)
            return false;
        foreach (var b in value)
        {
            if (!(char.IsAsciiLetterOrDigit((char)b) || b is (byte)'_' or (byte)'.' or (byte)'-'))
                return false;
        }
        return true;
    }

    /// <summary>
    /// W3C trace context, version 00 layout: <c>vv-&lt;32 hex&gt;-&lt;16 hex&gt;-&lt;2 hex&gt;</c> in lower
    /// case, version not ff, trace id and parent id not all zeros.
    /// </summary>
    internal static bool IsValidTraceParent(ReadOnlySpan<byte> value)
    {
        if (value.Length != 55 || value[2] != '-' || value[35] != '-' || value[52] != '-')
            return false;
        if (!IsLowerHex(value[..2]) || !IsLowerHex(value[3..35]) || !IsLowerHex(value[36..52]) || !IsLowerHex(value[53..55]))
            return false;
        if (value[0] == 'f' && value[1] == 'f')
            return false;
        return value[3..35].IndexOfAnyExcept((byte)'0') >= 0 && value[36..52].IndexOfAnyExcept((byte)'0') >= 0;
    }

    private static bool IsLowerHex(ReadOnlySpan<byte> value)
    {
        foreach (var b in value)
        {
            if (!((uint)(b - '0') <= 9 || (uint)(b - 'a') <= 5))
                return false;
        }
        return true;
    }
}

/// <summary>Accumulates hints comment by comment; allocates only for a group name or traceparent actually given.</summary>
internal struct HintBuilder
{
    private Priority? _priority;
    private TimeSpan? _timeout;
    private string? _group;
    private RouteHint _route;
    private string? _traceParent;
    private int _ignored;

    public readonly QueryHints Build() => new()
    {
        Priority = _priority,
        Timeout = _timeout,
        ResourceGroup = _group,
        Route = _route,
        TraceParent = _traceParent,
        Ignored = _ignored,
    };

    /// <summary>Reads one comment token of <paramref name="text"/>; anything but a terminated mproxy comment is skipped.</summary>
    public void AddComment(ReadOnlySpan<byte> text, in SqlToken comment)
    {
        if (comment.IsUnterminated)
            return;
        var raw = comment.Slice(text);
        ReadOnlySpan<byte> body;
        if (comment.Kind == SqlTokenKind.BlockComment)
            body = raw[2..^2];
        else
            body = raw[0] == '#' ? raw[1..] : raw[2..];
        body = body.TrimStart(" \t\r\n"u8);
        if (body.Length < 7 || !Ascii.EqualsIgnoreCase(body[..7], "mproxy:"u8))
            return;
        body = body[7..];
        while (true)
        {
            var start = body.IndexOfAnyExcept(" \t\r\n,"u8);
            if (start < 0)
                return;
            body = body[start..];
            var length = body.IndexOfAny(" \t\r\n,"u8);
            if (length < 0)
                length = body.Length;
            AddItem(body[..length]);
            body = body[length..];
        }
    }

    private void AddItem(ReadOnlySpan<byte> item)
    {
        var eq = item.IndexOf((byte)'=');
        if (eq <= 0)
        {
            _ignored++;
            return;
        }
        var key = item[..eq];
        var value = Unquote(item[(eq + 1)..]);
        var ok = false;
        if (Ascii.EqualsIgnoreCase(key, "priority"u8))
        {
            if (ok = QueryHintParser.TryParsePriority(value, out var priority))
                _priority = priority;
        }
        else if (Ascii.EqualsIgnoreCase(key, "timeout"u8))
        {
            if (ok = QueryHintParser.TryParseTimeout(value, out var timeout))
                _timeout = timeout;
        }
        else if (Ascii.EqualsIgnoreCase(key, "route"u8))
        {
            if (Ascii.EqualsIgnoreCase(value, "primary"u8))
                (_route, ok) = (RouteHint.Primary, true);
            else if (Ascii.EqualsIgnoreCase(value, "replica"u8))
                (_route, ok) = (RouteHint.Replica, true);
        }
        else if (Ascii.EqualsIgnoreCase(key, "group"u8))
        {
            if (ok = QueryHintParser.IsValidGroup(value))
                _group = Encoding.ASCII.GetString(value);
        }
        else if (Ascii.EqualsIgnoreCase(key, "traceparent"u8))
        {
            if (ok = QueryHintParser.IsValidTraceParent(value))
                _traceParent = Encoding.ASCII.GetString(value);
        }
        if (!ok)
            _ignored++;
    }

    private static ReadOnlySpan<byte> Unquote(ReadOnlySpan<byte> value) =>
        value.Length >= 2 && value[0] is (byte)'\'' or (byte)'"' && value[^1] == value[0] ? value[1..^1] : value;
}
