using System.Buffers.Binary;
using System.Globalization;
using System.Net.Sockets;
using MProxy.TestSupport;
using MySql.Data.MySqlClient;

namespace MProxy.Integration.Tests.MySql;

/// <summary>TLS between MySQL clients and the edge (the same <c>tls:</c> section as PostgreSQL clients), with MySql.Data, the mariadb client and a raw socket.</summary>
[Collection(MariaDbCollection.Name)]
public class MySqlTlsTests(MariaDbFixture fixture) : IDisposable
{
    private readonly TestCertificate _certificate = TestCertificate.Create("CN=mproxy-mysql-tls-test");

    public void Dispose()
    {
        _certificate.Dispose();
        GC.SuppressFinalize(this);
    }

    /// <summary>The edge's <c>network:</c> section (the default here; <see cref="MySqlTlsTestsOnSockets"/> runs the same tests on the runtime's sockets).</summary>
    protected virtual string Network => "";

    private Task<MySqlEdgeServer> StartAsync(string mode = "allow") =>
        MySqlEdgeServer.StartAsync(MySqlEdgeServer.AppConfig(fixture.Server, extra: _certificate.Yaml(mode) + "\n" + Network));

    [Fact]
    public async Task MySqlData_SslRequired_LogsInAndQueriesOverTls_CleartextStillWorksUnderAllow()
    {
        await using var edge = await StartAsync();
        await using (var tls = await OpenTlsAsync(edge.Port))
        {
            Assert.Equal(42L, Convert.ToInt64(await MariaDbFixture.ScalarAsync(tls, "SELECT 6 * 7"), CultureInfo.InvariantCulture));
            Assert.Equal(20000L * 32, Convert.ToInt64(await MariaDbFixture.ScalarAsync(tls,
                "SELECT LENGTH(GROUP_CONCAT(MD5(seq) SEPARATOR '')) FROM seq_1_to_20000"), CultureInfo.InvariantCulture));
        }
        await using var cleartext = await MariaDbFixture.OpenAsync(edge.Port);
        Assert.Equal(1L, Convert.ToInt64(await MariaDbFixture.ScalarAsync(cleartext, "SELECT 1"), CultureInfo.InvariantCulture));
    }

    [Fact]
    public async Task MariadbClient_WithSsl_ReportsTheCipher()
    {
        await using var edge = await StartAsync("require");
        var result = await MariaDbServer.RunClientAsync(edge.Port, MariaDbServer.AppUser, MariaDbServer.Password, MariaDbServer.AppDatabase,
            "SELECT 6 * 7;\n\\s\n", "--ssl");
        Assert.True(result.ExitCode == 0, result.Stdout + result.Stderr);
        Assert.StartsWith("42\n", result.Stdout, StringComparison.Ordinal);
        Assert.Contains("Cipher in use is", result.Stdout);
    }

    [Fact]
    public async Task ModeRequire_RefusesACleartextLogin_With3159()
    {
        await using var edge = await StartAsync("require");
        var error = await Assert.ThrowsAsync<MySqlException>(() => MariaDbFixture.OpenAsync(edge.Port));
        Assert.Contains("insecure transport are prohibited", error.Message);
        await using var tls = await OpenTlsAsync(edge.Port);
        Assert.Equal(1L, Convert.ToInt64(await MariaDbFixture.ScalarAsync(tls, "SELECT 1"), CultureInfo.InvariantCulture));
    }

    [Fact]
    public async Task SslRequestFollowedByCleartextBytes_GoToTheHandshake_WhichFails_AndOnlyThatClientCloses()
    {
        await using var edge = await StartAsync();
        using (var client = new TcpClient())
        {
            await client.ConnectAsync("127.0.0.1", edge.Port, TestContext.Current.CancellationToken);
            var stream = client.GetStream();
            var handshake = await ReadPacketAsync(stream);
            Assert.Equal(10, handshake.Payload[0]);
            // SSLRequest: capabilities (PROTOCOL_41 | SSL | SECURE_CONNECTION), max packet, collation,
            // 23 zeros — then, in the same write, cleartext where the TLS ClientHello belongs.
            var garbage = "this is not a TLS ClientHello\n"u8;
            var request = new byte[4 + 32 + garbage.Length];
            BinaryPrimitives.WriteInt32LittleEndian(request, 32 | (1 << 24));
            BinaryPrimitives.WriteUInt32LittleEndian(request.AsSpan(4), 0x200 | 0x800 | 0x8000);
            BinaryPrimitives.WriteUInt32LittleEndian(request.AsSpan(8), 1 << 24);
            request[12] = 33;
            garbage.CopyTo(request.AsSpan(36));
            await stream.WriteAsync(request, TestContext.Current.CancellationToken);
            // The edge reads those bytes as a (broken) TLS record: at most a TLS alert comes back, never
            // a MySQL packet, and the connection closes.
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
            timeout.CancelAfter(TimeSpan.FromSeconds(10));
            var answer = new MemoryStream();
            try
            {
                await stream.CopyToAsync(answer, timeout.Token);
            }
            catch (IOException)
            {
                // reset by the edge: closed too
            }
            Assert.False(timeout.IsCancellationRequested, "the edge kept the connection open");
            var bytes = answer.ToArray();
            Assert.True(bytes.Length == 0 || bytes[0] == 0x15, $"expected nothing or a TLS alert, got {Convert.ToHexString(bytes)}");
        }
        await using var tls = await OpenTlsAsync(edge.Port);
        Assert.Equal(1L, Convert.ToInt64(await MariaDbFixture.ScalarAsync(tls, "SELECT 1"), CultureInfo.InvariantCulture));
    }

    private static async Task<MySqlConnection> OpenTlsAsync(int port)
    {
        var connection = new MySqlConnection(MariaDbFixture.ConnectionString(port).Replace("SslMode=None", "SslMode=Required", StringComparison.Ordinal));
        await connection.OpenAsync(TestContext.Current.CancellationToken);
        return connection;
    }

    private static async Task<(byte Sequence, byte[] Payload)> ReadPacketAsync(NetworkStream stream)
    {
        var header = new byte[4];
        await stream.ReadExactlyAsync(header, TestContext.Current.CancellationToken);
        var payload = new byte[header[0] | header[1] << 8 | header[2] << 16];
        await stream.ReadExactlyAsync(payload, TestContext.Current.CancellationToken);
        return (header[3], payload);
    }
}

/// <summary><see cref="MySqlTlsTests"/> on the runtime's socket transport.</summary>
[Collection(MariaDbCollection.Name)]
public sealed class MySqlTlsTestsOnSockets(MariaDbFixture fixture) : MySqlTlsTests(fixture)
{
    protected override string Network => "network: { transport: sockets }";
}
