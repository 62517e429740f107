using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;

namespace MProxy.Integration.Tests.Observability;

/// <summary>One log event as the edge wrote it: event id, the rendered message and the structured values.</summary>
internal sealed record CapturedLog(string Category, LogLevel Level, EventId EventId, string Message, IReadOnlyList<KeyValuePair<string, object?>> State, Exception? Exception)
{
    /// <summary>Everything the event carries, as text: to search for secrets.</summary>
    public string AllText => Message + " " + string.Join(" ", State.Select(kv => $"{kv.Key}={kv.Value}")) + " " + Exception;
}

/// <summary>A logger provider that keeps every event (Debug and up) of one edge.</summary>
internal sealed class LogCapture : ILoggerProvider
{
    private readonly ConcurrentQueue<CapturedLog> _events = new();

    public IReadOnlyList<CapturedLog> Events => [.. _events];

    public ILogger CreateLogger(string categoryName) => new Logger(this, categoryName);

    public void Dispose()
    {
    }

    private sealed class Logger(LogCapture owner, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel != LogLevel.None;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            var values = state as IReadOnlyList<KeyValuePair<string, object?>> ?? [];
            owner._events.Enqueue(new CapturedLog(category, logLevel, eventId, formatter(state, exception), [.. values], exception));
        }
    }
}
