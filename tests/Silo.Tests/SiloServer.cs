using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Logging;
using MProxy.Silo.Hosting;
using MProxy.TestSupport;

namespace MProxy.Silo.Tests;

/// <summary>A silo running in this test process on free loopback ports (edge API h2c, dashboard HTTP/1.1).</summary>
internal sealed class SiloServer : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly string? _policyFile;

    private SiloServer(WebApplication app, SiloOptions options, string? policyFile)
    {
        _app = app;
        Options = options;
        _policyFile = policyFile;
    }

    public SiloOptions Options { get; }

    public Uri EdgeApi => new($"http://127.0.0.1:{Options.Listen.Port}/");

    public Uri Dashboard => new($"http://127.0.0.1:{Options.DashboardListen!.Port}/");

    public IServiceProvider Services => _app.Services;

    public static async Task<SiloServer> StartAsync(string? policyYaml = null, string store = SiloOptions.MemoryStore, int? edgePort = null)
    {
        string? policyFile = null;
        if (policyYaml is not null)
        {
            policyFile = Path.Combine(Path.GetTempPath(), $"mproxy-policy-{Guid.NewGuid():n}.yaml");
            await File.WriteAllTextAsync(policyFile, policyYaml);
        }
        var options = new SiloOptions
        {
            Listen = new IPEndPoint(IPAddress.Loopback, edgePort ?? FreePort.Next()),
            DashboardListen = new IPEndPoint(IPAddress.Loopback, FreePort.Next()),
            Store = store,
            PolicyFile = policyFile,
        };
        var app = SiloHost.Build(options, LogLevel.Warning);
        await app.StartAsync();
        return new SiloServer(app, options, policyFile);
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
        if (_policyFile is not null)
            File.Delete(_policyFile);
    }
}
