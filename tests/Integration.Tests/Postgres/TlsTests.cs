using System.Buffers.Binary;
using System.Globalization;
using System.Security.Cryptography.X509Certificates;
using MProxy.TestSupport;
using Npgsql;

namespace MProxy.Integration.Tests.Postgres;

/// <summary>TLS between clients and the edge (the <c>tls:</c> section), with Npgsql, psql and a raw client.</summary>
public class TlsTests(PostgresFixture postgres) : IDisposable
{
    private const int SslRequestCode = 80877103;

    private readonly TestCertificate _certificate = TestCertificate.Create("CN=mproxy-tls-test");

    private string Config(string mode = "allow") => $"""
        users:
          - name: {PostgresServer.AppUser}
            password: {PostgresServer.Password}
          - name: ops
            password: ops-pw
            admin: true
        pool:
          size: 2
        databases:
          - name: {PostgresServer.AppDatabase}
            primary: 127.0.0.1:{postgres.Server.Port}
        """ + "\n" + _certificate.Yaml(mode) + "\n" + Network;

    /// <summary>The edge's <c>network:</c> section (the default here; <see cref="TlsTestsOnSockets"/> runs the same tests on the runtime's sockets).</summary>
    protected virtual string Network => "";

    public void Dispose()
    {
        _certificate.Dispose();
        GC.SuppressFinalize(this);
    }

    /// <summary>Npgsql with sslmode=require, recording the certificate the edge presented.</summary>
    private static NpgsqlDataSource TlsSource(EdgeServer edge, Action<X509Certificate?> seen, string database = PostgresServer.AppDatabase, string user = PostgresServer.AppUser, string password = PostgresServer.Password) =>
        TlsSource(edge.ConnectionString(user, database, password), seen, typeLoading: database != "mproxy");

    private static NpgsqlDataSource TlsSource(string connectionString, Action<X509Certificate?> seen, bool typeLoading = true)
    {
        var builder = new NpgsqlDataSourceBuilder(new NpgsqlConnectionStringBuilder(connectionString) { SslMode = SslMode.Require, Pooling = false }.ConnectionString);
        builder.UseSslClientAuthenticationOptionsCallback(options => options.RemoteCertificateValidationCallback = (_, certificate, _, _) =>
        {
            seen(certificate);
            return true;
        });
        // The admin console is not a PostgreSQL server: it has no pg_type to load types from.
        if (!typeLoading)
            builder.ConfigureTypeLoading(t => t.EnableTypeLoading(false));
        return builder.Build();
    }

    [Fact]
    public async Task Npgsql_RequireSsl_GetsTheEdgesCertificate_AndRunsQueriesThroughThePool()
    {
        await using var edge = await EdgeServer.StartAsync(Config());
        X509Certificate? presented = null;
        await using var source = TlsSource(edge, c => presented = c);
        await using var connection = await source.OpenConnectionAsync();
        Assert.NotNull(presented);
        Assert.Equal(_certificate.Thumbprint, new X509Certificate2(presented).Thumbprint);

        // Simple and extended protocol, a result larger than one TLS record, and transactions over the pooled connections.
        for (var i = 0; i < 5; i++)
        {
            await using var command = new NpgsqlCommand("SELECT $1::int * 2", connection);
            command.Parameters.AddWithValue(i);
            Assert.Equal(i * 2, await command.ExecuteScalarAsync());
        }
        await using (var big = new NpgsqlCommand("SELECT string_agg(md5(g::text), '') FROM generate_series(1, 20000) g", connection))
            Assert.Equal(20000 * 32, ((string)(await big.ExecuteScalarAsync())!).Length);
        await using (var transaction = await connection.BeginTransactionAsync())
        {
            await using var command = new NpgsqlCommand("SELECT count(*) FROM generate_series(1, 100)", connection, transaction);
            Assert.Equal(100L, await command.ExecuteScalarAsync());
            await transaction.CommitAsync();
        }

        // The admin console (over TLS too) shows what this client negotiated.
        await using var adminSource = TlsSource(edge, _ => { }, "mproxy", "ops", "ops-pw");
        await using var admin = await adminSource.OpenConnectionAsync();
        await using var show = new NpgsqlCommand("SHOW CLIENTS", admin);
        await using var reader = await show.ExecuteReaderAsync();
        var tls = new List<string?>();
        while (await reader.ReadAsync())
            if (reader.GetString(reader.GetOrdinal("user")) == PostgresServer.AppUser)
                tls.Add(reader.IsDBNull(reader.GetOrdinal("tls")) ? null : reader.GetString(reader.GetOrdinal("tls")));
        var described = Assert.Single(tls);
        Assert.StartsWith("Tls1", described, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ModeAllow_CleartextClientsStillLogIn()
    {
        await using var edge = await EdgeServer.StartAsync(Config());
        await using var connection = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(edge.ConnectionString()) { SslMode = SslMode.Disable }.ConnectionString);
        await connection.OpenAsync();
        Assert.Equal(1, await new NpgsqlCommand("SELECT 1", connection).ExecuteScalarAsync());
    }

    [Fact]
    public async Task ModeRequire_RefusesACleartextLogin_With28000_AndServesTls()
    {
        await using var edge = await EdgeServer.StartAsync(Config("require"));
        await using var cleartext = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(edge.ConnectionString()) { SslMode = SslMode.Disable }.ConnectionString);
        var error = await Assert.ThrowsAsync<PostgresException>(() => cleartext.OpenAsync());
        Assert.Equal("28000", error.SqlState);
        Assert.Contains("only TLS connections", error.MessageText);

        await using var source = TlsSource(edge, _ => { });
        await using var connection = await source.OpenConnectionAsync();
        Assert.Equal(7, await new NpgsqlCommand("SELECT 7", connection).ExecuteScalarAsync());
    }

    [Fact]
    public async Task Psql_SslModeRequire_ReportsAnSslConnection()
    {
        await using var edge = await EdgeServer.StartAsync(Config("require"));
        var result = await ProcessRunner.RunAsync("psql",
            [$"host=127.0.0.1 port={edge.Port.ToString(CultureInfo.InvariantCulture)} user={PostgresServer.AppUser} dbname={PostgresServer.AppDatabase} sslmode=require",
             "-X", "-v", "ON_ERROR_STOP=1", "-At", "-c", "SELECT 6 * 7", "-c", "\\conninfo"],
            new Dictionary<string, string> { ["PGPASSWORD"] = PostgresServer.Password, ["PGCONNECT_TIMEOUT"] = "10" });
        Assert.True(result.ExitCode == 0, result.Stdout + result.Stderr);
        Assert.StartsWith("42\n", result.Stdout, StringComparison.Ordinal);
        Assert.Contains("SSL connection (protocol: TLSv1.", result.Stdout);
    }

    [Fact]
    public async Task SslRequestFollowedByCleartextBytes_IsAProtocolViolation_NotReadAsEncrypted()
    {
        await using var edge = await EdgeServer.StartAsync(Config());
        await using var client = await RawPgClient.ConnectAsync(edge.Port);
        // SSLRequest and, in the same write, the start of a cleartext startup message.
        var bytes = new byte[8 + 8];
        BinaryPrimitives.WriteInt32BigEndian(bytes, 8);
        BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(4), SslRequestCode);
        BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(8), 8);
        BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(12), 196608);
        await client.SendAsync(bytes);
        var reply = await client.ReadAsync();
        Assert.NotNull(reply);
        Assert.Equal('E', reply.Value.Code);
        Assert.Equal("08P01", reply.Value.SqlState);
        Assert.Contains("unencrypted data after SSLRequest", reply.Value.MessageText);
        Assert.True(await client.IsClosedByServerAsync());
    }

    [Fact]
    public async Task FailedHandshake_ClosesOnlyThatClient()
    {
        await using var edge = await EdgeServer.StartAsync(Config());
        await using (var client = await RawPgClient.ConnectAsync(edge.Port))
        {
            var request = new byte[8];
            BinaryPrimitives.WriteInt32BigEndian(request, 8);
            BinaryPrimitives.WriteInt32BigEndian(request.AsSpan(4), SslRequestCode);
            await client.SendAsync(request);
            Assert.Equal('S', (char)await client.ReadByteAsync());
            await client.SendAsync("this is not a TLS ClientHello\n"u8.ToArray());
            Assert.True(await client.IsClosedByServerAsync());
        }
        await using var source = TlsSource(edge, _ => { });
        await using var connection = await source.OpenConnectionAsync();
        Assert.Equal(1, await new NpgsqlCommand("SELECT 1", connection).ExecuteScalarAsync());
    }

    [Fact]
    public async Task Reload_PicksUpARenewedCertificate_ForNewConnections()
    {
        using var renewed = TestCertificate.Create("CN=mproxy-tls-renewed");
        var body = MProxy.Integration.Tests.Observability.ObservedEdge.Users(postgres.Server);
        await using var edge = await MProxy.Integration.Tests.Observability.ObservedEdge.StartAsync(body + _certificate.Yaml());
        X509Certificate? first = null;
        await using var firstSource = TlsSource(edge.ConnectionString(), c => first = c);
        await using var before = await firstSource.OpenConnectionAsync();
        Assert.Equal(_certificate.Thumbprint, new X509Certificate2(first!).Thumbprint);

        await edge.RewriteAsync(body + renewed.Yaml());
        var reload = Assert.Single(await edge.AdminAsync("RELOAD"));
        Assert.Contains("in force", string.Join(" ", reload.Values));

        X509Certificate? second = null;
        await using var secondSource = TlsSource(edge.ConnectionString(), c => second = c);
        await using var after = await secondSource.OpenConnectionAsync();
        Assert.Equal(renewed.Thumbprint, new X509Certificate2(second!).Thumbprint);
        // The connection made before the reload keeps its session.
        Assert.Equal(3, await new NpgsqlCommand("SELECT 3", before).ExecuteScalarAsync());
    }
}

/// <summary><see cref="TlsTests"/> on the runtime's socket transport.</summary>
public sealed class TlsTestsOnSockets(PostgresFixture postgres) : TlsTests(postgres)
{
    protected override string Network => "network: { transport: sockets }";
}
