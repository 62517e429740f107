using MProxy.TestSupport;

namespace MProxy.Integration.Tests.Postgres;

/// <summary>Graceful shutdown: stop accepting, let open transactions finish, close the rest.</summary>
public sealed class ShutdownTests(PostgresFixture postgres)
{
    [Fact]
    public async Task Stop_LetsOpenTransactionFinish_ClosesIdleClients_RefusesNewOnes()
    {
        await postgres.Server.ExecuteAsync("CREATE TABLE IF NOT EXISTS shutdown_test (id int); GRANT ALL ON shutdown_test TO app;", PostgresServer.AppDatabase);
        var edge = await EdgeServer.StartAsync(EdgeServer.AppConfig(postgres.Server, poolSize: 2, extra: "shutdownTimeoutMs: 20000"));
        try
        {
            var (inTransaction, _) = await RawPgClient.LoginAsync(edge.Port, PostgresServer.AppUser, PostgresServer.AppDatabase, PostgresServer.Password);
            var (idle, _) = await RawPgClient.LoginAsync(edge.Port, PostgresServer.AppUser, PostgresServer.AppDatabase, PostgresServer.Password);
            await inTransaction.SendQueryAsync("BEGIN; INSERT INTO shutdown_test VALUES (7)");
            await inTransaction.ReadUntilReadyAsync();

            var stopping = edge.StopAsync();

            // The idle client is told and closed.
            var goodbye = await idle.ReadAsync();
            Assert.Equal("57P01", goodbye!.Value.SqlState);
            Assert.True(await idle.IsClosedByServerAsync());

            // New clients are refused.
            await Assert.ThrowsAnyAsync<Exception>(async () => await edge.OpenAsync());

            // The open transaction can still finish.
            await inTransaction.SendQueryAsync("INSERT INTO shutdown_test VALUES (8); COMMIT");
            var commit = await inTransaction.ReadUntilReadyAsync();
            Assert.DoesNotContain(commit, m => m.Code == 'E');
            Assert.True(await inTransaction.IsClosedByServerAsync());

            await stopping.WaitAsync(TimeSpan.FromSeconds(30));
            Assert.Equal(2L, await postgres.Server.ScalarAsync("SELECT count(*) FROM shutdown_test WHERE id IN (7, 8)", PostgresServer.AppDatabase));
            await inTransaction.DisposeAsync();
            await idle.DisposeAsync();
        }
        finally
        {
            await edge.DisposeAsync();
        }
    }

    /// <summary>A client that sent only BEGIN (deferred: no server has seen it) is in a transaction too, and may finish it.</summary>
    [Fact]
    public async Task Stop_LetsADeferredTransactionFinish()
    {
        await postgres.Server.ExecuteAsync("CREATE TABLE IF NOT EXISTS shutdown_deferred (id int); GRANT ALL ON shutdown_deferred TO app;", PostgresServer.AppDatabase);
        var edge = await EdgeServer.StartAsync(EdgeServer.AppConfig(postgres.Server, poolSize: 2, extra: "shutdownTimeoutMs: 20000"));
        try
        {
            var (begun, _) = await RawPgClient.LoginAsync(edge.Port, PostgresServer.AppUser, PostgresServer.AppDatabase, PostgresServer.Password);
            await using var _ = begun;
            await begun.SendQueryAsync("BEGIN");
            Assert.Equal((byte)'T', (await begun.ReadUntilReadyAsync())[^1].Payload[0]);

            var stopping = edge.StopAsync();
            await Task.Delay(300); // several of the drain's rounds: the client is not closed meanwhile

            await begun.SendQueryAsync("INSERT INTO shutdown_deferred VALUES (9)");
            Assert.DoesNotContain(await begun.ReadUntilReadyAsync(), m => m.Code == 'E');
            await begun.SendQueryAsync("COMMIT");
            Assert.DoesNotContain(await begun.ReadUntilReadyAsync(), m => m.Code == 'E');
            Assert.True(await begun.IsClosedByServerAsync());

            await stopping.WaitAsync(TimeSpan.FromSeconds(30));
            Assert.Equal(1L, await postgres.Server.ScalarAsync("SELECT count(*) FROM shutdown_deferred WHERE id = 9", PostgresServer.AppDatabase));
        }
        finally
        {
            await edge.DisposeAsync();
        }
    }
}
