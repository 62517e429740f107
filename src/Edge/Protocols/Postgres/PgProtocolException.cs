using System.Diagnostics.CodeAnalysis;

namespace MProxy.Edge.Protocols.Postgres;

/// <summary>A peer broke the protocol; the session answers <c>08P01</c> and closes that one connection.</summary>
internal sealed class PgProtocolException(string message) : Exception(message)
{
    [DoesNotReturn]
    public static void Throw(string message) => throw new PgProtocolException(message);
}

/// <summary>
/// An error that ends a client request with an ErrorResponse (and, when <see cref="Fatal"/>, the
/// connection too). Its message already starts with <c>mproxy:</c>.
/// </summary>
internal sealed class PgErrorException(string sqlState, string message, bool fatal = false, string? detail = null, string? hint = null)
    : Exception(message)
{
    public string SqlState { get; } = sqlState;
    public bool Fatal { get; } = fatal;
    public string? Detail { get; } = detail;
    public string? Hint { get; } = hint;
}
