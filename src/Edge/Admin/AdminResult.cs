namespace MProxy.Edge.Admin;

/// <summary>
/// One answer of the admin console, protocol-neutral: columns (all text) and rows, and the command
/// tag a protocol adapter completes it with. A command that only reports (RELOAD) answers one row.
/// </summary>
internal sealed record AdminResultSet(IReadOnlyList<string> Columns, IReadOnlyList<string?[]> Rows, string CommandTag)
{
    /// <summary>Notices to send before the result (e.g. settings a reload kept until restart).</summary>
    public IReadOnlyList<string> Notices { get; init; } = [];

    public bool HasRows => Columns.Count > 0;
}

/// <summary>A refused or failed admin command: a SQLSTATE and a message starting with <c>mproxy:</c>.</summary>
internal sealed record AdminError(string SqlState, string Message, string? Hint = null);

/// <summary>The result of one admin command: a result set or an error.</summary>
internal readonly record struct AdminReply(AdminResultSet? Result, AdminError? Error)
{
    public static AdminReply Of(AdminResultSet result) => new(result, null);

    public static AdminReply Fail(string sqlState, string message, string? hint = null) => new(null, new AdminError(sqlState, message, hint));
}

/// <summary>Who is asking (for the log).</summary>
internal readonly record struct AdminCaller(int ClientId, string User);

/// <summary>SQLSTATEs the console answers with.</summary>
internal static class AdminSqlState
{
    public const string SyntaxError = "42601";
    public const string InsufficientPrivilege = "42501";
    public const string FeatureNotSupported = "0A000";
    public const string ConfigFileError = "F0000";
}
