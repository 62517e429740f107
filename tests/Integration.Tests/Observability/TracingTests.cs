using System.Collections.Concurrent;
using System.Diagnostics;
using MProxy.TestSupport;
using Npgsql;

namespace MProxy.Integration.Tests.Observability;

/// <summary>Spans of request units through the edge, and what the edge's logs never contain.</summary>
[Collection(ObservedEdge.Collection)]
public sealed class TracingTests(PostgresFixture postgres) : IAsyncLifetime
{
    private const string Tenant = "trace_tenant";
    private const string ParameterValue = "param-value-8317";

    private PostgresServer Server => postgres.Server;

    public async ValueTask InitializeAsync() =>
        await Server.ExecuteAsync($"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{Tenant}') THEN CREATE ROLE {Tenant} LOGIN PASSWORD '{PostgresServer.Password}'; END IF; END $$");

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;

    private string Config => ObservedEdge.Users(Server, Tenant) + $$"""
        pool: { size: 2, waitTimeoutMs: 5000 }
        qos:
          groups:
            - { name: oltp, ruPerSecond: 100000, burst: 100000, priority: high }
          tenants:
            - { name: {{Tenant}}, group: oltp }
        """;

    /// <summary>Records every finished span of the edge's activity source (all data requested, as a sampling exporter would).</summary>
    private sealed class SpanRecorder : IDisposable
    {
        private readonly ActivityListener _listener;

        public SpanRecorder()
        {
            _listener = new ActivityListener
            {
                ShouldListenTo = source => source.Name == "MProxy.Edge",
                Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
                ActivityStopped = activity => Spans.Enqueue(activity),
            };
            ActivitySource.AddActivityListener(_listener);
        }

        public ConcurrentQueue<Activity> Spans { get; } = new();

        public List<Activity> Of(string tenant) => [.. Spans.Where(s => (string?)s.GetTagItem("mproxy.tenant") == tenant)];

        public void Dispose() => _listener.Dispose();
    }

    [Fact]
    public async Task Query_WithClientTraceParent_OneSpanInTheClientsTraceWithCostAndNoParameterValues()
    {
        using var recorder = new SpanRecorder();
        await using var edge = await ObservedEdge.StartAsync(Config);
        await using var connection = await edge.OpenAsync(Tenant);
        var traceId = ActivityTraceId.CreateRandom();
        var parentId = ActivitySpanId.CreateRandom();
        var spansBefore = recorder.Of(Tenant).Count;

        const int queries = 3;
        for (var i = 0; i < queries; i++)
        {
            await using var command = new NpgsqlCommand($"/* mproxy: traceparent=00-{traceId}-{parentId}-01 */ SELECT length($1::text)", connection);
            command.Parameters.AddWithValue(ParameterValue);
            Assert.Equal(ParameterValue.Length, await command.ExecuteScalarAsync());
        }
        Assert.True(await ObservedEdge.EventuallyAsync(() => Task.FromResult(recorder.Of(Tenant).Count(s => s.TraceId == traceId) == queries)));

        var spans = recorder.Of(Tenant);
        Assert.Equal(spansBefore + queries, spans.Count); // one span per request unit, no more
        foreach (var span in spans.Where(s => s.TraceId == traceId))
        {
            Assert.Equal("mproxy.query", span.OperationName);
            Assert.Equal(ActivityKind.Server, span.Kind);
            Assert.Equal(parentId, span.ParentSpanId);
            Assert.Equal("postgresql", span.GetTagItem("db.system"));
            Assert.Equal("app", span.GetTagItem("db.namespace"));
            Assert.Equal("read", span.GetTagItem("mproxy.type"));
            Assert.Equal("primary", span.GetTagItem("mproxy.destination"));
            Assert.Equal("127.0.0.1", span.GetTagItem("server.address"));
            Assert.Equal(Server.Port, span.GetTagItem("server.port"));
            Assert.Matches("^[0-9a-f]{16}$", (string)span.GetTagItem("mproxy.fingerprint")!);
            Assert.True((double)span.GetTagItem("mproxy.ru")! > 0);
            Assert.True((long)span.GetTagItem("mproxy.bytes_to_client")! > 0);
            Assert.True((long)span.GetTagItem("mproxy.bytes_to_server")! > 0);
            Assert.True((double)span.GetTagItem("mproxy.queue_wait_ms")! >= 0);
            foreach (var (key, value) in span.TagObjects)
            {
                Assert.DoesNotContain(ParameterValue, value?.ToString() ?? "", StringComparison.Ordinal);
                Assert.DoesNotContain("length(", value?.ToString() ?? "", StringComparison.Ordinal); // no query text either
                _ = key;
            }
        }
        Assert.Single(spans.Where(s => s.TraceId == traceId).Select(s => s.GetTagItem("mproxy.fingerprint")).Distinct());
    }

    [Fact]
    public async Task Query_WithoutTraceParent_SpanIsARootOfItsOwnTrace()
    {
        using var recorder = new SpanRecorder();
        await using var edge = await ObservedEdge.StartAsync(Config);
        var (client, _) = await RawPgClient.LoginAsync(edge.Port, Tenant, PostgresServer.AppDatabase, PostgresServer.Password);
        await using var _ = client;

        await client.SendQueryAsync("SELECT 1");
        await client.ReadUntilReadyAsync();
        Assert.True(await ObservedEdge.EventuallyAsync(() => Task.FromResult(recorder.Of(Tenant).Count == 1)));

        var span = Assert.Single(recorder.Of(Tenant));
        Assert.Equal(default, span.ParentSpanId);
        Assert.Null(span.Parent);
    }

    [Fact]
    public async Task Logs_EveryEdgeEventHasAnIdAndNoSecretsOrParameterValues()
    {
        await using var edge = await ObservedEdge.StartAsync(Config);
        await using (var connection = await edge.OpenAsync(Tenant))
        {
            await using var command = new NpgsqlCommand("SELECT length($1::text)", connection);
            command.Parameters.AddWithValue(ParameterValue);
            await command.ExecuteScalarAsync();
            await using var failing = new NpgsqlCommand("SELECT $1::int / 0", connection);
            failing.Parameters.AddWithValue(8317);
            await Assert.ThrowsAsync<PostgresException>(() => failing.ExecuteScalarAsync());
        }
        await Assert.ThrowsAsync<PostgresException>(() => edge.OpenAsync(Tenant, "wrong-password-5521"));
        await Assert.ThrowsAsync<PostgresException>(() => edge.OpenAsync(PostgresServer.AppUser, PostgresServer.Password, "mproxy"));
        Assert.Single(await edge.AdminAsync("RELOAD"));

        var logs = edge.Logs().Where(l => l.Category.StartsWith("MProxy.", StringComparison.Ordinal)).ToList();

        Assert.Contains(logs, l => l.EventId.Id != 0 && l.Message.Contains("logged in as " + Tenant, StringComparison.Ordinal));
        Assert.Contains(logs, l => l.Message.Contains("wrong", StringComparison.OrdinalIgnoreCase) || l.Message.Contains("failed", StringComparison.OrdinalIgnoreCase));
        Assert.Contains(logs, l => l.Message.Contains("admin console", StringComparison.OrdinalIgnoreCase));
        Assert.All(logs, l => Assert.True(l.EventId.Id != 0, $"no event id: {l.Category}: {l.Message}"));
        foreach (var secret in new[] { PostgresServer.Password, ObservedEdge.AdminPassword, "wrong-password-5521", ParameterValue, "8317" })
            Assert.DoesNotContain(logs, l => l.AllText.Contains(secret, StringComparison.Ordinal));
    }
}
