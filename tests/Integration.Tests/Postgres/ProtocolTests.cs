using System.Buffers.Binary;
using System.Text;
using MProxy.TestSupport;
using Npgsql;

namespace MProxy.Integration.Tests.Postgres;

/// <summary>Startup, authentication, malformed input and limits, spoken at the byte level.</summary>
public class ProtocolTests(PostgresFixture postgres) : IAsyncLifetime
{
    private EdgeServer _edge = null!;

    /// <summary>The edge's <c>network:</c> section (the default here; <see cref="ProtocolTestsOnSockets"/> runs the same tests on the runtime's sockets).</summary>
    protected virtual string Network => "";

    /// <summary>Appended to the names of the tables this class writes, so that it and its twin on the other transport never share one.</summary>
    protected virtual string Suffix => "";

    public async ValueTask InitializeAsync() => _edge = await EdgeServer.StartAsync(EdgeServer.AppConfig(postgres.Server, poolSize: 2, extra: """
        clients:
          maxConnections: 50
          maxMessageBytes: 65536
        """ + "\n" + Network));

    public async ValueTask DisposeAsync() => await _edge.DisposeAsync();

    [Fact]
    public async Task SslRequest_IsAnsweredN_ThenStartupProceeds()
    {
        await using var client = await RawPgClient.ConnectAsync(_edge.Port);
        var ssl = new byte[8];
        BinaryPrimitives.WriteInt32BigEndian(ssl, 8);
        BinaryPrimitives.WriteInt32BigEndian(ssl.AsSpan(4), 80877103);
        await client.SendAsync(ssl);
        Assert.Equal('N', (char)await client.ReadByteAsync());
        var welcome = await client.StartupAsync(PostgresServer.AppUser, PostgresServer.AppDatabase, PostgresServer.Password);
        Assert.Equal('Z', welcome[^1].Code);
        Assert.Contains(welcome, m => m.Code == 'K');
        Assert.Contains(welcome, m => m.Code == 'S' && m.Text.StartsWith("server_version\0", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Login_WrongPassword_Fails28P01()
    {
        await using var client = await RawPgClient.ConnectAsync(_edge.Port);
        var replies = await client.StartupAsync(PostgresServer.AppUser, PostgresServer.AppDatabase, "wrong");
        var error = Assert.Single(replies);
        Assert.Equal('E', error.Code);
        Assert.Equal("28P01", error.SqlState);
        Assert.StartsWith("mproxy: password authentication failed", error.MessageText);
    }

    [Fact]
    public async Task Login_UnknownUser_FailsLikeAWrongPassword()
    {
        await using var client = await RawPgClient.ConnectAsync(_edge.Port);
        var replies = await client.StartupAsync("nobody", PostgresServer.AppDatabase, PostgresServer.Password);
        Assert.Equal("28P01", Assert.Single(replies).SqlState);
    }

    [Fact]
    public async Task Login_UnknownDatabase_Fails3D000()
    {
        await using var client = await RawPgClient.ConnectAsync(_edge.Port);
        var replies = await client.StartupAsync(PostgresServer.AppUser, "nosuchdb", PostgresServer.Password);
        Assert.Equal("3D000", replies[^1].SqlState);
    }

    [Fact]
    public async Task UnsupportedStartupParameter_IsRefusedWithItsName()
    {
        await using var client = await RawPgClient.ConnectAsync(_edge.Port);
        var replies = await client.StartupAsync(PostgresServer.AppUser, PostgresServer.AppDatabase, PostgresServer.Password, [new("geqo", "off")]);
        Assert.Equal('E', replies[^1].Code);
        Assert.Contains("geqo", replies[^1].MessageText);
    }

    [Fact]
    public async Task UnknownMessageType_Gets08P01_AndOnlyThatClientCloses()
    {
        var (bad, _) = await RawPgClient.LoginAsync(_edge.Port, PostgresServer.AppUser, PostgresServer.AppDatabase, PostgresServer.Password);
        await using var good = await _edge.OpenAsync();
        await bad.SendAsync(RawPgClient.Message('!', "garbage"u8));
        var error = await bad.ReadAsync();
        Assert.Equal('E', error!.Value.Code);
        Assert.Equal("08P01", error.Value.SqlState);
        Assert.True(await bad.IsClosedByServerAsync());
        Assert.Equal(1, await new NpgsqlCommand("SELECT 1", good).ExecuteScalarAsync());
        await bad.DisposeAsync();
    }

    [Fact]
    public async Task InvalidLength_Gets08P01()
    {
        var (bad, _) = await RawPgClient.LoginAsync(_edge.Port, PostgresServer.AppUser, PostgresServer.AppDatabase, PostgresServer.Password);
        await bad.SendAsync(new byte[] { (byte)'Q', 0, 0, 0, 2 });
        var error = await bad.ReadAsync();
        Assert.Equal("08P01", error!.Value.SqlState);
        Assert.True(await bad.IsClosedByServerAsync());
        await bad.DisposeAsync();
    }

    [Fact]
    public async Task OversizedMessage_Gets08P01NamingTheLimit()
    {
        var (bad, _) = await RawPgClient.LoginAsync(_edge.Port, PostgresServer.AppUser, PostgresServer.AppDatabase, PostgresServer.Password);
        var header = new byte[5];
        header[0] = (byte)'Q';
        BinaryPrimitives.WriteInt32BigEndian(header.AsSpan(1), 100_000_000);
        await bad.SendAsync(header);
        var error = await bad.ReadAsync();
        Assert.Equal("08P01", error!.Value.SqlState);
        Assert.Contains("65536", error.Value.MessageText);
        await bad.DisposeAsync();
    }

    [Fact]
    public async Task MalformedStartupPacket_Gets08P01()
    {
        await using var client = await RawPgClient.ConnectAsync(_edge.Port);
        var packet = new byte[8];
        BinaryPrimitives.WriteInt32BigEndian(packet, 3); // shorter than the header itself
        await client.SendAsync(packet);
        var error = await client.ReadAsync();
        Assert.Equal("08P01", error!.Value.SqlState);
    }

    [Fact]
    public async Task PipelinedQueries_InOnePacket_AreAnsweredInOrder()
    {
        var (client, _) = await RawPgClient.LoginAsync(_edge.Port, PostgresServer.AppUser, PostgresServer.AppDatabase, PostgresServer.Password);
        await using var _ = client;
        var bytes = new List<byte>();
        for (var i = 0; i < 5; i++)
            bytes.AddRange(RawPgClient.Message('Q', Encoding.UTF8.GetBytes($"SELECT {i}\0")));
        await client.SendAsync(bytes.ToArray());
        for (var i = 0; i < 5; i++)
        {
            var replies = await client.ReadUntilReadyAsync();
            var row = replies.Single(m => m.Code == 'D');
            Assert.Equal(i.ToString(System.Globalization.CultureInfo.InvariantCulture), Encoding.UTF8.GetString(row.Payload.AsSpan(6)));
        }
    }

    [Fact]
    public async Task CopyData_SplitAcrossPackets_ArrivesIntact()
    {
        await postgres.Server.ExecuteAsync($"CREATE TABLE IF NOT EXISTS copy_split{Suffix} (line text); GRANT ALL ON copy_split{Suffix} TO app; TRUNCATE copy_split{Suffix};", PostgresServer.AppDatabase);
        var (client, _) = await RawPgClient.LoginAsync(_edge.Port, PostgresServer.AppUser, PostgresServer.AppDatabase, PostgresServer.Password);
        await using var _ = client;
        await client.SendQueryAsync($"COPY copy_split{Suffix} FROM STDIN");
        Assert.Equal('G', (await client.ReadAsync())!.Value.Code);
        var lines = string.Concat(Enumerable.Range(0, 2000).Select(i => $"line {i} {new string('x', 20)}\n"));
        var copyData = RawPgClient.Message('d', Encoding.UTF8.GetBytes(lines));
        // Deliver one CopyData message in pieces, so that the edge sees it across several reads.
        for (var offset = 0; offset < copyData.Length; offset += 7000)
        {
            await client.SendAsync(copyData.AsMemory(offset, Math.Min(7000, copyData.Length - offset)));
            await Task.Delay(20);
        }
        await client.SendAsync(RawPgClient.Message('c', []));
        var replies = await client.ReadUntilReadyAsync();
        Assert.Contains(replies, m => m.Code == 'C' && m.Text.StartsWith("COPY 2000", StringComparison.Ordinal));
        Assert.Equal(2000L, await postgres.Server.ScalarAsync($"SELECT count(*) FROM copy_split{Suffix}", PostgresServer.AppDatabase));
    }

    [Fact]
    public async Task LoneSync_WithoutServer_IsAnsweredReadyForQuery()
    {
        var (client, _) = await RawPgClient.LoginAsync(_edge.Port, PostgresServer.AppUser, PostgresServer.AppDatabase, PostgresServer.Password);
        await using var _ = client;
        await client.SendAsync(RawPgClient.Message('S', []));
        var reply = await client.ReadAsync();
        Assert.Equal('Z', reply!.Value.Code);
        Assert.Equal((byte)'I', reply.Value.Payload[0]);
    }

    [Fact]
    public async Task ClientCap_Exceeded_Refused53300()
    {
        await using var edge = await EdgeServer.StartAsync(EdgeServer.AppConfig(postgres.Server, extra: """
            clients:
              maxConnections: 2
            """));
        await using var a = await edge.OpenAsync();
        await using var b = await edge.OpenAsync();
        var error = await Assert.ThrowsAsync<PostgresException>(async () => await edge.OpenAsync());
        Assert.Equal("53300", error.SqlState);
        Assert.Contains("maxConnections", error.MessageText);
        await a.CloseAsync();
        await PoolingTests.WaitUntilAsync(() => edge.Get<MProxy.Edge.Sessions.ClientRegistry>().Count < 2);
        await using var c = await edge.OpenAsync();
    }
}

/// <summary><see cref="ProtocolTests"/> on the runtime's socket transport.</summary>
public sealed class ProtocolTestsOnSockets(PostgresFixture postgres) : ProtocolTests(postgres)
{
    protected override string Network => "network: { transport: sockets }";

    protected override string Suffix => "_sockets";
}
