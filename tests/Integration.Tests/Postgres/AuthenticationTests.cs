using MProxy.Edge.Protocols.Postgres.Auth;
using MProxy.TestSupport;
using Npgsql;

namespace MProxy.Integration.Tests.Postgres;

/// <summary>Client authentication methods (edge as server) and server authentication methods (edge as client).</summary>
public sealed class AuthenticationTests(PostgresFixture postgres)
{
    private PostgresServer Server => postgres.Server;

    [Theory]
    [InlineData("scram_user")]
    [InlineData("md5_user")]
    [InlineData("clear_user")]
    [InlineData("trust_user")]
    public async Task ServerAuthentication_EachMethod_Works(string serverUser)
    {
        await using var edge = await EdgeServer.StartAsync($"""
            users:
              - name: client
                password: client-pw
            databases:
              - name: db
                serverDatabase: postgres
                primary: 127.0.0.1:{Server.Port}
                serverUser: {serverUser}
                serverPassword: {PostgresServer.Password}
            """);
        await using var connection = await edge.OpenAsync("client", "db", "client-pw");
        Assert.Equal(serverUser, await new NpgsqlCommand("SELECT current_user", connection).ExecuteScalarAsync());
    }

    [Fact]
    public async Task ServerAuthentication_WrongServerPassword_ReportsServerErrorToClient()
    {
        await using var edge = await EdgeServer.StartAsync($"""
            users:
              - name: client
                password: client-pw
            databases:
              - name: db
                serverDatabase: postgres
                primary: 127.0.0.1:{Server.Port}
                serverUser: scram_user
                serverPassword: not-the-password
            """);
        var error = await Assert.ThrowsAsync<PostgresException>(async () => await edge.OpenAsync("client", "db", "client-pw"));
        Assert.StartsWith("28", error.SqlState);
        Assert.Contains("mproxy: cannot connect to server", error.MessageText);
    }

    [Fact]
    public async Task ClientAuthentication_Md5Method_AcceptsRightPasswordOnly()
    {
        await using var edge = await EdgeServer.StartAsync(EdgeServer.AppConfig(Server, extra: "auth:\n  method: md5"));
        await using (var ok = await edge.OpenAsync())
            Assert.Equal(1, await new NpgsqlCommand("SELECT 1", ok).ExecuteScalarAsync());
        var error = await Assert.ThrowsAsync<PostgresException>(async () => await edge.OpenAsync(password: "wrong"));
        Assert.Equal("28P01", error.SqlState);
    }

    [Fact]
    public async Task ClientAuthentication_StoredScramVerifier_Works()
    {
        var verifier = ScramVerifier.FromPassword("verifier-pw").ToString();
        await using var edge = await EdgeServer.StartAsync($"""
            users:
              - name: {PostgresServer.AppUser}
                scramVerifier: "{verifier}"
                serverPassword: {PostgresServer.Password}
            databases:
              - name: {PostgresServer.AppDatabase}
                primary: 127.0.0.1:{Server.Port}
            """);
        await using var connection = await edge.OpenAsync(password: "verifier-pw");
        Assert.Equal(1, await new NpgsqlCommand("SELECT 1", connection).ExecuteScalarAsync());
        await Assert.ThrowsAsync<PostgresException>(async () => await edge.OpenAsync(password: PostgresServer.Password));
    }

    [Fact]
    public async Task ClientAuthentication_Trust_OnlyWhenConfigured_AndOnlyForKnownUsers()
    {
        await using var edge = await EdgeServer.StartAsync(EdgeServer.AppConfig(Server, extra: "auth:\n  method: trust"));
        await using (var connection = await edge.OpenAsync(password: null))
            Assert.Equal(1, await new NpgsqlCommand("SELECT 1", connection).ExecuteScalarAsync());
        await Assert.ThrowsAnyAsync<NpgsqlException>(async () => await edge.OpenAsync(user: "stranger", password: null));
    }

    [Fact]
    public async Task DefaultMethod_IsScram_AndRejectsCleartextOnlyClients()
    {
        await using var edge = await EdgeServer.StartAsync(EdgeServer.AppConfig(Server));
        await using var client = await RawPgClient.ConnectAsync(edge.Port);
        var writer = new System.Buffers.ArrayBufferWriter<byte>();
        MProxy.Edge.Protocols.Postgres.PgMessageWriter.WriteStartup(writer, [new("user", "app"), new("database", "app")]);
        await client.SendAsync(writer.WrittenMemory);
        var request = await client.ReadAsync();
        Assert.Equal('R', request!.Value.Code);
        Assert.Equal(10, System.Buffers.Binary.BinaryPrimitives.ReadInt32BigEndian(request.Value.Payload)); // AuthenticationSASL
        Assert.Contains("SCRAM-SHA-256", request.Value.Text);
    }
}
