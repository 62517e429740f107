using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using MProxy.Edge.Admin;
using MProxy.Edge.Configuration;
using MProxy.Edge.Networking;
using MProxy.Edge.Protocols;
using MProxy.Edge.Protocols.MySql;
using MProxy.Edge.Protocols.Postgres;
using MProxy.Edge.Sessions;
using MProxy.Edge.Telemetry;

namespace MProxy.Edge.Hosting;

/// <summary>Builds the edge process: Kestrel listeners, the protocol adapters, pools, the janitor, graceful shutdown.</summary>
public static class EdgeHost
{
    /// <summary>
    /// The edge for <paramref name="config"/>; <paramref name="source"/> is the command line it came
    /// from, for reloads (null: no reload); <paramref name="logs"/> receives the log events besides the
    /// console.
    /// </summary>
    public static WebApplication Build(EdgeConfig config, LogLevel logLevel = LogLevel.Information, TimeProvider? time = null, CommandLineOverrides? source = null,
        ILoggerProvider? logs = null)
    {
        // The edge's settings come from its own file (--config, reloaded by ReloadTriggers), not
        // from appsettings.json, which nothing needs reloaded; left on, the host's reload-on-change
        // for it watches the working directory and every directory under it (an inotify watch each
        // on Linux), waking a thread for every file written there — a database's data directory,
        // the whole disk from /.
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = ["--hostBuilder:reloadConfigOnChange=false"] });
        // Nor is anything else ambient read: the builder's defaults would take an appsettings.json
        // found in the working directory and every environment variable as configuration, so a
        // Kestrel:Endpoints entry there would open a listener nobody configured, a Logging section
        // would override --log-level. Everything the edge does comes from its own configuration.
        builder.Configuration.Sources.Clear();
        builder.Logging.ClearProviders();
        builder.Logging.SetMinimumLevel(logLevel);
        builder.Logging.AddFilter("Microsoft", LogLevel.Warning);
        builder.Logging.AddSimpleConsole(o =>
        {
            o.SingleLine = true;
            o.TimestampFormat = "yyyy-MM-dd HH:mm:ss.fff ";
            o.UseUtcTimestamp = true;
        });
        if (logs is not null)
            builder.Logging.AddProvider(logs);
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = config.ShutdownTimeout + TimeSpan.FromSeconds(5));

        var services = builder.Services;
        services.AddSingleton(time ?? TimeProvider.System);
        services.AddSingleton(new ConfigStore(config));
        services.AddSingleton<ClientRegistry>();
        var epoll = config.Network.Transport == NetworkTransport.Epoll ? new Networking.Epoll.EpollTransport(config.Network.EpollLoops, config.Network.EpollParking) : null;
        if (epoll is null)
        {
            services.AddSingleton<INetworkConnector, SocketNetworkConnector>();
        }
        else
        {
            // Registered through a factory so that the container disposes it (stopping its loops)
            // after the pools that depend on the connector, which it creates first.
            services.AddSingleton(_ => epoll);
            services.AddSingleton<INetworkConnector>(sp => new Networking.Epoll.EpollNetworkConnector(sp.GetRequiredService<Networking.Epoll.EpollTransport>()));
        }
        PolicyHosting.AddPolicyAndQos(services, config);
        services.AddSingleton<PgPoolRegistry>();
        services.AddSingleton<PgEdgeContext>();
        services.AddSingleton<IPeriodicTask, PoolMaintenance>();
        AddMySql(services);
        services.AddHostedService<Janitor>();
        services.AddHostedService<GracefulShutdown>();
        services.AddHostedService<BackendMonitors>();
        AddObservability(services, config, source);

        // The database listeners accept onto direct socket connections (no pipe and loop between
        // the socket and the session in each direction, and the session's work runs on the
        // socket's completion); the admin HTTP listener stays on Kestrel's default transport.
        // With the epoll transport the loops accept the clients and start their sessions themselves.
        builder.Services.AddSingleton<IConnectionListenerFactory>(sp => new DirectSocketListenerFactory(
            new[] { config.Listen.Postgres, config.Listen.MySql }.OfType<EndPoint>().ToArray(), epoll,
            endpoint => endpoint.Equals(config.Listen.Postgres) ? ActivatorUtilities.CreateInstance<PgConnectionHandler>(sp).OnConnectedAsync
                : endpoint.Equals(config.Listen.MySql) ? ActivatorUtilities.CreateInstance<MySqlConnectionHandler>(sp).OnConnectedAsync
                : null,
            sp.GetRequiredService<ILoggerFactory>().CreateLogger("MProxy.Edge.Listener")));
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.AddServerHeader = false;
            if (config.Listen.Postgres is { } postgres)
                kestrel.Listen(postgres, listen => listen.UseConnectionHandler<PgConnectionHandler>());
            if (config.Listen.MySql is { } mysql)
                kestrel.Listen(mysql, listen => listen.UseConnectionHandler<MySqlConnectionHandler>());
            if (config.Listen.Admin is { } admin)
                kestrel.Listen(admin, listen => listen.Protocols = HttpProtocols.Http1);
        });

        var app = builder.Build();
        app.MapGet("/healthz", (ClientRegistry clients) => clients.ShuttingDown ? Results.StatusCode(503) : Results.Text("ok\n"));
        if (config.Telemetry.Metrics)
            app.MapGet("/metrics", (PrometheusExporter exporter) => Results.Text(exporter.Scrape(), PrometheusExporter.ContentType));
        return app;
    }

    /// <summary>Metrics, traces, the admin console and configuration reload.</summary>
    private static void AddObservability(IServiceCollection services, EdgeConfig config, CommandLineOverrides? source)
    {
        services.AddSingleton(sp => new EdgeTelemetry(config.Telemetry, sp.GetRequiredService<TimeProvider>()));
        services.AddSingleton<IEdgeInventory>(sp =>
        {
            var time = sp.GetRequiredService<TimeProvider>();
            var pg = sp.GetRequiredService<PgPoolRegistry>();
            var mysql = sp.GetRequiredService<MySqlPoolRegistry>();
            return new CombinedInventory(
                new ProtocolInventory(PgPoolRegistry.Protocol, () => pg.All, () => pg.AllBackends, time),
                new ProtocolInventory(MySqlPoolRegistry.Protocol, () => mysql.All, () => mysql.AllBackends, time));
        });
        services.AddSingleton<EdgeMetrics>();
        // Without the endpoint (telemetry.metrics: false, read at start only) nothing listens to the
        // meter for it: the query path's recordings then cost no aggregation.
        if (config.Telemetry.Metrics)
            services.AddSingleton(sp => new PrometheusExporter(sp.GetRequiredService<EdgeTelemetry>().Meter, includeRuntime: true));
        services.AddSingleton<IPeriodicTask, TelemetryTick>();
        services.AddHostedService<TelemetryHost>();
        services.AddSingleton(new ReloadSource(source));
        services.AddSingleton<ConfigReloader>();
        services.AddHostedService<ReloadTriggers>();
        services.AddSingleton<AdminConsole>();
    }

    /// <summary>Starts the health monitors of databases with backends when the edge starts, so routing knows the topology before the first client.</summary>
    private sealed class BackendMonitors(PgPoolRegistry pools, MySqlPoolRegistry mySqlPools, ConfigStore config) : IHostedService
    {
        public Task StartAsync(CancellationToken cancellationToken)
        {
            foreach (var database in config.Current.Databases)
            {
                if (database.Protocol == DatabaseProtocol.MySql)
                    mySqlPools.BackendsFor(database);
                else
                    pools.BackendsFor(database);
            }
            return Task.CompletedTask;
        }

        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    }

    /// <summary>The MySQL adapter: its pools (maintained by the janitor, closed after the drain) and its sessions' shared context.</summary>
    private static void AddMySql(IServiceCollection services)
    {
        services.AddSingleton<MySqlPoolRegistry>();
        services.AddSingleton<MySqlEdgeContext>();
        services.AddSingleton<IPeriodicTask, MySqlPoolMaintenance>();
        services.AddHostedService<MySqlPoolShutdown>();
    }

    private sealed class MySqlPoolMaintenance(MySqlPoolRegistry pools) : IPeriodicTask
    {
        public string Name => "mysql pool maintenance";

        public void Tick() => pools.Maintain();
    }

    /// <summary>Closes the MySQL server connections once the clients have drained (after <see cref="GracefulShutdown"/>, which stops first).</summary>
    private sealed class MySqlPoolShutdown(MySqlPoolRegistry pools) : IHostedService
    {
        public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        public Task StopAsync(CancellationToken cancellationToken)
        {
            pools.CloseAll();
            return Task.CompletedTask;
        }
    }

    private sealed class PoolMaintenance(PgPoolRegistry pools) : IPeriodicTask
    {
        public string Name => "pool maintenance";

        public void Tick() => pools.Maintain();
    }

    /// <summary>
    /// On SIGTERM/SIGINT: stop accepting (Kestrel), let clients finish their transactions up to the
    /// shutdown timeout (each closes at its next transaction boundary), then close server connections.
    /// </summary>
    private sealed class GracefulShutdown(ClientRegistry clients, PgPoolRegistry pools, ConfigStore config, TimeProvider time, IHostApplicationLifetime lifetime)
        : IHostedService
    {
        private Task _drain = Task.CompletedTask;

        public Task StartAsync(CancellationToken cancellationToken)
        {
            lifetime.ApplicationStopping.Register(() => _drain = DrainAsync());
            return Task.CompletedTask;
        }

        private async Task DrainAsync()
        {
            await clients.DrainAsync(config.Current.ShutdownTimeout, time);
            pools.CloseAll();
        }

        public Task StopAsync(CancellationToken cancellationToken) => _drain.WaitAsync(cancellationToken);
    }
}
