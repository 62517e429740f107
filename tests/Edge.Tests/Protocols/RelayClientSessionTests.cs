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

        await RelayClientSession.RunWithoutExecutionContext(async () =>
        {
            atStart = Scope.Value;
            await Task.Yield();
            afterAwait = Scope.Value;
        });

        Assert.Null(atStart);
        Assert.Null(afterAwait);
        Assert.Equal("connection scope", Scope.Value); // the caller's own context is untouched
        Assert.False(ExecutionContext.IsFlowSuppressed());
    }
}
