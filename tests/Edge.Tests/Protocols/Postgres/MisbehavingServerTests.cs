using System.Buffers;
using MProxy.Edge.Protocols.Postgres;
using MProxy.TestSupport;

namespace MProxy.Edge.Tests.Protocols.Postgres;

/// <summary>How the edge copes with server behaviour a real server will not produce on demand (a scripted mock server).</summary>
public sealed class MisbehavingServerTests : IAsyncLifetime
{
    private PgServerMock _server = null!;
    private EdgeServer _edge = null!;

    public async ValueTask InitializeAsync()
    {
        _server = PgServerMock.Start();
        _edge = await EdgeServer.StartAsync($"""
            auth:
              method: trust
            users:
              - name: app
            pool:
              size: 2
              checkAfterIdleMs: 0
            databases:
              - name: app
                primary: 127.0.0.1:{_server.Port}
            """);
    }

    public async ValueTask DisposeAsync()
    {
        await _edge.DisposeAsync();
        await _server.DisposeAsync();
    }

    private async Task<(RawPgClient Client, MockServerSession Server)> LoginAsync()
    {
        var login = RawPgClient.LoginAsync(_edge.Port, "app", "app", null);
        var (client, welcome) = await login;
        Assert.Equal('Z', welcome[^1].Code);
        // The first login opened a server connection to learn its parameters and returned it to the pool.
        var server = await _server.NextSessionAsync();
        return (client, server);
    }

    [Fact]
    public async Task ServerDiesMidResult_ClientGets08006AndIsClosed_NextClientGetsNewConnection()
    {
        var (client, server) = await LoginAsync();
        await client.SendQueryAsync("SELECT big");
        var query = await server.ReadRequestAsync();
        Assert.Equal("SELECT big\0", query[^1].Text);
        await server.SendAsync(w => PgMessageWriter.WriteRowDescription(w, ["big"]));
        server.Kill();

        var messages = new List<PgWireMessage>();
        while (await client.ReadAsync() is { } m)
            messages.Add(m);
        // The RowDescription may or may not arrive: a TCP reset can discard it in the edge's receive buffer.
        Assert.All(messages.SkipLast(1), m => Assert.Equal('T', m.Code));
        Assert.Equal("08006", messages[^1].SqlState);
        Assert.Contains("lost the connection to the server", messages[^1].MessageText);

        var (next, _) = await RawPgClient.LoginAsync(_edge.Port, "app", "app", null);
        await next.SendQueryAsync("SELECT 1");
        var fresh = await _server.NextSessionAsync();
        await fresh.ReadRequestAsync();
        await fresh.SendResultAsync("x", ["1"]);
        var reply = await next.ReadUntilReadyAsync();
        Assert.Contains(reply, m => m.Code == 'D');
        await client.DisposeAsync();
        await next.DisposeAsync();
    }

    [Fact]
    public async Task ExtendedError_ServerSkipsToSync_ResponsesStayAligned_AndConnectionIsReleased()
    {
        var (client, server) = await LoginAsync();
        byte[] parse = [0, .. "SELECT bad\0"u8, 0, 0];
        byte[] bind = [0, 0, 0, 0, 0, 0, 0, 0];
        byte[] execute = [0, 0, 0, 0, 0];
        byte[] parse2 = [0, .. "SELECT good\0"u8, 0, 0];
        await client.SendAsync([
            .. RawPgClient.Message('P', parse), .. RawPgClient.Message('B', bind), .. RawPgClient.Message('E', execute), .. RawPgClient.Message('S', []),
            .. RawPgClient.Message('P', parse2), .. RawPgClient.Message('B', bind), .. RawPgClient.Message('E', execute), .. RawPgClient.Message('S', []),
        ]);
        var first = await server.ReadRequestAsync();
        Assert.Equal(['P', 'B', 'E', 'S'], first.Select(m => m.Code));
        await server.SendAsync(w =>
        {
            PgMessageWriter.WriteError(w, "ERROR", "42601", "syntax error");
            PgMessageWriter.WriteReadyForQuery(w, PgTransactionStatus.Idle);
        });
        var second = await server.ReadRequestAsync();
        Assert.Equal(['P', 'B', 'E', 'S'], second.Select(m => m.Code));
        await server.SendAsync(w =>
        {
            w.Write("1\0\0\0\u0004"u8); // ParseComplete
            w.Write("2\0\0\0\u0004"u8); // BindComplete
            PgMessageWriter.WriteCommandComplete(w, "SELECT 0");
            PgMessageWriter.WriteReadyForQuery(w, PgTransactionStatus.Idle);
        });

        var replies = new List<PgWireMessage>();
        replies.AddRange(await client.ReadUntilReadyAsync());
        replies.AddRange(await client.ReadUntilReadyAsync());
        Assert.Equal(['E', 'Z', '1', '2', 'C', 'Z'], replies.Select(m => m.Code));

        var pool = Assert.Single(_edge.Get<PgPoolRegistry>().All);
        await Poll.UntilAsync(() => pool.Connections.GetStats().Idle == 1);
        await client.DisposeAsync();
    }

    [Fact]
    public async Task ServerTerminatesIdlePooledConnection_ItIsDropped_AndTheNextQueryUsesANewOne()
    {
        var (client, server) = await LoginAsync();
        var pool = Assert.Single(_edge.Get<PgPoolRegistry>().All);
        Assert.Equal(1, pool.Connections.GetStats().Idle);
        await server.SendAsync(w => PgMessageWriter.WriteError(w, "FATAL", "57P01", "terminating connection due to administrator command"));
        server.Kill();
        await Poll.UntilAsync(() => pool.Connections.GetStats().Idle == 0 || pool.Connections.GetStats().Total == 0 || IsIdleBroken(pool));

        await client.SendQueryAsync("SELECT 1");
        var fresh = await _server.NextSessionAsync();
        await fresh.ReadRequestAsync();
        await fresh.SendResultAsync("x", ["1"]);
        var reply = await client.ReadUntilReadyAsync();
        Assert.Contains(reply, m => m.Code == 'D');
        Assert.DoesNotContain(reply, m => m.Code == 'E');
        await client.DisposeAsync();
    }

    [Fact]
    public async Task ServerSendsUnsolicitedResult_ConnectionIsTreatedAsBroken()
    {
        var (client, server) = await LoginAsync();
        await server.SendAsync(w => PgMessageWriter.WriteCommandComplete(w, "SELECT 1"));
        var pool = Assert.Single(_edge.Get<PgPoolRegistry>().All);
        await Poll.UntilAsync(() => IsIdleBroken(pool));
        await client.SendQueryAsync("SELECT 1");
        var fresh = await _server.NextSessionAsync();
        await fresh.ReadRequestAsync();
        await fresh.SendResultAsync("x", ["1"]);
        Assert.Contains(await client.ReadUntilReadyAsync(), m => m.Code == 'D');
        await client.DisposeAsync();
    }

    [Fact]
    public async Task ParameterStatusFromClientsSet_IsForwarded_AndFollowsTheClientToAnotherConnection()
    {
        var (client, server) = await LoginAsync();
        await client.SendQueryAsync("SET TimeZone = 'Asia/Tokyo'");
        await server.ReadRequestAsync();
        await server.SendAsync(w =>
        {
            PgMessageWriter.WriteCommandComplete(w, "SET");
            PgMessageWriter.WriteParameterStatus(w, "TimeZone", "Asia/Tokyo");
            PgMessageWriter.WriteReadyForQuery(w, PgTransactionStatus.Idle);
        });
        var reply = await client.ReadUntilReadyAsync();
        Assert.Contains(reply, m => m.Code == 'S' && m.Text == "TimeZone\0Asia/Tokyo\0");

        // Take the client's connection away: another client holds it in a transaction. The connection
        // goes back to the pool just after the ReadyForQuery is relayed: wait for it, or the other
        // client would open a second connection instead.
        var pool = Assert.Single(_edge.Get<PgPoolRegistry>().All);
        await Poll.UntilAsync(() => pool.Connections.GetStats() is { Idle: 1, Total: 1 });
        var (other, _) = await RawPgClient.LoginAsync(_edge.Port, "app", "app", null);
        await other.SendQueryAsync("BEGIN READ WRITE"); // sent at once (a plain BEGIN would be deferred to the next statement)
        var otherRequest = await server.ReadRequestAsync();
        Assert.Equal("SET TimeZone TO 'UTC';\0", otherRequest[0].Text); // the other client keeps the server's default
        await server.SendAsync(w =>
        {
            PgMessageWriter.WriteCommandComplete(w, "RESET");
            PgMessageWriter.WriteParameterStatus(w, "TimeZone", "UTC");
            PgMessageWriter.WriteReadyForQuery(w, PgTransactionStatus.Idle);
        });
        await server.ReadRequestAsync(); // BEGIN READ WRITE
        await server.SendAsync(w =>
        {
            PgMessageWriter.WriteCommandComplete(w, "BEGIN");
            PgMessageWriter.WriteReadyForQuery(w, PgTransactionStatus.InTransaction);
        });
        var otherReply = await other.ReadUntilReadyAsync();
        Assert.DoesNotContain(otherReply, m => m.Code == 'S'); // the edge's own SET stays invisible

        await client.SendQueryAsync("SHOW TimeZone");
        var second = await _server.NextSessionAsync();
        var request = await second.ReadRequestAsync();
        Assert.Equal("SET TimeZone TO 'Asia/Tokyo';\0", request[0].Text);
        await client.DisposeAsync();
        await other.DisposeAsync();
    }

    [Fact]
    public async Task DeferredBegin_ReachesTheServerOnlyAheadOfTheFirstStatement_ItsRepliesHidden()
    {
        var (client, server) = await LoginAsync();
        await client.SendQueryAsync("begin");
        var begun = await client.ReadUntilReadyAsync();
        Assert.Equal(["C", "Z"], begun.Select(m => m.Code.ToString()));
        Assert.Equal("BEGIN\0", begun[0].Text);
        Assert.Equal("T", begun[1].Text);

        await client.SendQueryAsync("SELECT 1");
        Assert.Equal("begin\0", Assert.Single(await server.ReadRequestAsync()).Text); // the client's own text
        Assert.Equal("SELECT 1\0", Assert.Single(await server.ReadRequestAsync()).Text);
        await server.SendAsync(w =>
        {
            PgMessageWriter.WriteCommandComplete(w, "BEGIN");
            PgMessageWriter.WriteReadyForQuery(w, PgTransactionStatus.InTransaction);
        });
        await server.SendResultAsync("x", ["1"], status: (char)PgTransactionStatus.InTransaction);
        var answered = await client.ReadUntilReadyAsync();
        Assert.Equal(["T", "D", "C", "Z"], answered.Select(m => m.Code.ToString())); // one statement's replies: BEGIN's are hidden
        Assert.Equal("T", answered[^1].Text);
        await client.DisposeAsync();
    }

    private static bool IsIdleBroken(PgPool pool) => pool.Connections.GetStats().Total == 0;
}
