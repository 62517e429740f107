using MProxy.TestSupport;

[assembly: AssemblyFixture(typeof(MProxy.Integration.Tests.PostgresFixture))]

namespace MProxy.Integration.Tests;

/// <summary>One real PostgreSQL server shared by the integration tests of this assembly.</summary>
public sealed class PostgresFixture : IAsyncLifetime
{
    private PostgresServer? _server;

    public PostgresServer Server => _server ?? throw new InvalidOperationException("PostgreSQL did not start");

    public async ValueTask InitializeAsync() => _server = await PostgresServer.StartAsync();

    public async ValueTask DisposeAsync()
    {
        if (_server is not null)
            await _server.DisposeAsync();
    }
}
