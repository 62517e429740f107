using MProxy.Edge.Protocols;

namespace MProxy.Edge.Tests.Protocols;

public sealed class RelayClientSessionTests
{
    private static readonly AsyncLocal<string> Scope = new();

    [Fact]
    public async Task RunWithoutExecutionContext_TheSessionCarriesNoneOfTheCallersAsyncLocals()
    {
        // What Kestrel does around a connection handler: a logging scope in an AsyncLocal.
        Scope.Value = "connection scope";
        string? atStart = "not run", afterAwait = "not run";
        var resumed = new TaskCompletionSource();

        var session = RelayClientSession.RunWithoutExecutionContext(async () =>
        {
            atStart = Scope.Value;
            await resumed.Task;
            afterAwait = Scope.Value;
        });
        // Resumed inline by a thread that has the scope (Task.Run flows it): the session still must not see it.
        _ = Task.Run(resumed.SetResult);
        await session;

        Assert.Null(atStart);
        Assert.Null(afterAwait);
        Assert.Equal("connection scope", Scope.Value); // the caller's own context is untouched
    }

    [Fact]
    public async Task RunWithoutExecutionContext_StartsTheSessionInlineUpToItsFirstAwait()
    {
        var caller = Environment.CurrentManagedThreadId;
        int? startedOn = null;
        var resume = new TaskCompletionSource();

        var session = RelayClientSession.RunWithoutExecutionContext(async () =>
        {
            startedOn = Environment.CurrentManagedThreadId;
            await resume.Task;
        });

        // No thread-pool hop: the session ran up to its await before the call returned.
        Assert.Equal(caller, startedOn);
        Assert.False(session.IsCompleted);
        resume.SetResult();
        await session;
    }
}
