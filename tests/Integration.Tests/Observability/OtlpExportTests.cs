using System.Collections.Concurrent;
using System.Text;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using MProxy.TestSupport;

namespace MProxy.Integration.Tests.Observability;

/// <summary>The edge's OTLP/HTTP protobuf export reaching a local receiver.</summary>
[Collection(ObservedEdge.Collection)]
public sealed class OtlpExportTests(PostgresFixture postgres) : IAsyncLifetime
{
    private const string Tenant = "otlp_tenant";

    private PostgresServer Server => postgres.Server;

    public async ValueTask InitializeAsync() =>
        await Server.ExecuteAsync($"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{Tenant}') THEN CREATE ROLE {Tenant} LOGIN PASSWORD '{PostgresServer.Password}'; END IF; END $$");

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;

    /// <summary>A minimal OTLP/HTTP collector: keeps the body, path and headers of each POST and answers 200 with an empty message.</summary>
    private sealed class OtlpReceiver : IAsyncDisposable
    {
        private readonly WebApplication _app;

        private OtlpReceiver(WebApplication app, int port)
        {
            _app = app;
            Port = port;
        }

        public int Port { get; }

        public ConcurrentQueue<(string Path, string? ContentType, string? ApiKey, byte[] Body)> Posts { get; } = new();

        public static async Task<OtlpReceiver> StartAsync()
        {
            var port = FreePort.Next();
            var builder = WebApplication.CreateSlimBuilder();
            builder.Logging.ClearProviders();
            builder.WebHost.UseUrls($"http://127.0.0.1:{port}");
            var app = builder.Build();
            var receiver = new OtlpReceiver(app, port);
            app.MapPost("/v1/{signal}", async (HttpContext context, string signal) =>
            {
                using var body = new MemoryStream();
                await context.Request.Body.CopyToAsync(body);
                receiver.Posts.Enqueue(("/v1/" + signal, context.Request.ContentType, context.Request.Headers["api-key"].ToString(), body.ToArray()));
                context.Response.ContentType = "application/x-protobuf";
                context.Response.StatusCode = 200;
            });
            await app.StartAsync();
            return receiver;
        }

        public bool Received(string path, string marker) =>
            Posts.Any(p => p.Path == path && Encoding.UTF8.GetString(p.Body).Contains(marker, StringComparison.Ordinal));

        public async ValueTask DisposeAsync()
        {
            await _app.StopAsync();
            await _app.DisposeAsync();
        }
    }

    [Fact]
    public async Task Export_Configured_MetricsAndSpansReachTheReceiver()
    {
        await using var receiver = await OtlpReceiver.StartAsync();
        await using var edge = await ObservedEdge.StartAsync(ObservedEdge.Users(Server, Tenant) + $$"""
            qos:
              groups:
                - { name: oltp, ruPerSecond: 100000, burst: 100000 }
              tenants:
                - { name: {{Tenant}}, group: oltp }
            telemetry:
              traces: { sampleRatio: 1 }
              otlp:
                endpoint: http://127.0.0.1:{{receiver.Port}}
                protocol: http/protobuf
                exportIntervalMs: 200
                serviceName: mproxy-otlp-test
                headers: { api-key: otlp-test-key }
            """);
        var (client, _) = await RawPgClient.LoginAsync(edge.Port, Tenant, PostgresServer.AppDatabase, PostgresServer.Password);
        await using var _ = client;
        for (var i = 0; i < 3; i++)
        {
            await client.SendQueryAsync("SELECT 1");
            Assert.DoesNotContain(await client.ReadUntilReadyAsync(), m => m.Code == 'E');
        }

        Assert.True(await ObservedEdge.EventuallyAsync(() => Task.FromResult(receiver.Received("/v1/traces", Tenant)), TimeSpan.FromSeconds(30)),
            "no span of the tenant reached /v1/traces");
        // The query counter counts a query when it is sent, the duration histogram when it completes: an
        // export between the two has the first without the second, so wait for the histogram.
        Assert.True(await ObservedEdge.EventuallyAsync(() => Task.FromResult(receiver.Received("/v1/metrics", "mproxy.query.duration")), TimeSpan.FromSeconds(30)),
            "mproxy.query.duration did not reach /v1/metrics");

        var posts = receiver.Posts.ToList();
        Assert.All(posts, p => Assert.Equal("application/x-protobuf", p.ContentType));
        Assert.All(posts, p => Assert.Equal("otlp-test-key", p.ApiKey));
        Assert.Contains(posts, p => p.Path == "/v1/traces" && Encoding.UTF8.GetString(p.Body).Contains("mproxy.query", StringComparison.Ordinal));
        Assert.Contains(posts, p => p.Path == "/v1/metrics" && Encoding.UTF8.GetString(p.Body).Contains("mproxy-otlp-test", StringComparison.Ordinal));
        Assert.Contains(posts, p => p.Path == "/v1/metrics" && Encoding.UTF8.GetString(p.Body).Contains("mproxy.queries", StringComparison.Ordinal));
    }
}
