using Microsoft.AspNetCore.Server.Kestrel.Core;
using MProxy.Abstractions.Policy;
using MProxy.Grains.Configuration;
using MProxy.Grains.Exchange;
using MProxy.Grains.Hosting;
using MProxy.Grains.Storage;
using MProxy.Silo.Api;
using MProxy.Silo.Dashboard;

namespace MProxy.Silo.Hosting;

/// <summary>
/// Builds the silo: the grain store (migrated at start), the grain host, the policy file (reloaded
/// when it changes), the edge API, health endpoints and the dashboard. Two listeners serve the same
/// routes: one HTTP/2 with prior knowledge (edges), one HTTP/1.1 (browsers, probes).
/// </summary>
public static class SiloHost
{
    public static WebApplication Build(SiloOptions options, LogLevel logLevel = LogLevel.Information, TimeProvider? time = null)
    {
        // No reload-on-change for appsettings.json (the silo's settings are not in it): it would watch the working
        // directory recursively (see EdgeHost.Build).
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = ["--hostBuilder:reloadConfigOnChange=false"] });
        builder.Configuration.Sources.Clear(); // nor any ambient configuration (see EdgeHost.Build)
        builder.Logging.ClearProviders();
        builder.Logging.SetMinimumLevel(logLevel);
        builder.Logging.AddFilter("Microsoft", LogLevel.Warning);
        builder.Logging.AddSimpleConsole(o =>
        {
            o.SingleLine = true;
            o.TimestampFormat = "yyyy-MM-dd HH:mm:ss.fff ";
            o.UseUtcTimestamp = true;
        });

        var policy = options.PolicyFile is { } file ? PolicyConfigLoader.LoadFile(file) : PolicyConfig.Empty with { Version = 1 };
        IGrainStore store = options.Store == SiloOptions.MemoryStore
            ? new InMemoryGrainStore()
            : new PostgresGrainStore(SiloEndPoint.PostgresConnectionString(options.Store));

        var services = builder.Services;
        services.AddSingleton(options);
        services.AddSingleton(time ?? TimeProvider.System);
        services.AddSingleton(store);
        services.AddSingleton(new PolicyConfigStore(policy));
        services.AddSingleton(sp => new GrainHost(store, sp.GetRequiredService<TimeProvider>(), sp.GetRequiredService<ILogger<GrainHost>>()));
        services.AddSingleton<PolicyGrainFactory>();
        services.AddSingleton<PolicyExchangeService>(sp => new PolicyExchangeService(sp.GetRequiredService<PolicyGrainFactory>(), sp.GetRequiredService<ILogger<PolicyExchangeService>>()));
        services.AddSingleton<PolicyDirectory>();
        services.AddSingleton<StoreReadiness>();
        services.AddHostedService(sp => sp.GetRequiredService<StoreReadiness>());
        services.AddHostedService<PolicyFileWatcher>();
        services.ConfigureHttpJsonOptions(o => o.SerializerOptions.TypeInfoResolverChain.Insert(0, PolicyJsonContext.Default));

        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.AddServerHeader = false;
            kestrel.Listen(options.Listen, listen => listen.Protocols = HttpProtocols.Http2);
            if (options.DashboardListen is { } dashboard)
                kestrel.Listen(dashboard, listen => listen.Protocols = HttpProtocols.Http1);
        });

        var app = builder.Build();
        app.MapGet("/healthz", () => Results.Text("ok\n"));
        app.MapGet("/readyz", async (StoreReadiness readiness, IGrainStore grains, CancellationToken ct) =>
            readiness.Ready && await grains.PingAsync(ct) ? Results.Text("ready\n") : Results.Text("store not ready\n", statusCode: 503));
        EdgeApi.Map(app);
        DashboardEndpoints.Map(app);
        return app;
    }
}
