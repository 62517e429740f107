using System.CommandLine;
using Microsoft.Extensions.Logging;
using MProxy.Edge.Configuration;

namespace MProxy.Edge.Hosting;

/// <summary>The <c>mproxy</c> command line: a config file, plus a quick start that needs none.</summary>
public static class EdgeCommandLine
{
    public static async Task<int> RunAsync(string[] args)
    {
        var configFile = new Option<string?>("--config", "-c") { Description = "YAML configuration file (see README: Configuration)" };
        var listen = new Option<string?>("--listen") { Description = "PostgreSQL listen address, host:port (default 127.0.0.1:6432)" };
        var adminListen = new Option<string?>("--admin-listen") { Description = "HTTP admin address for /healthz and /metrics, host:port (default: off)" };
        var primary = new Option<string?>("--primary") { Description = "postgres://user:password@host:port/database — serve this database, accept this user" };
        var poolSize = new Option<int?>("--pool-size") { Description = "server connections per pool (default 20)" };
        var poolMode = new Option<string?>("--pool-mode") { Description = "transaction (default) or session" };
        var auth = new Option<string?>("--auth") { Description = "client authentication: scram-sha-256 (default), md5 or trust" };
        var tlsCert = new Option<string?>("--tls-cert") { Description = "PEM certificate (and chain) for TLS to clients (tls.certificate)" };
        var tlsKey = new Option<string?>("--tls-key") { Description = "PEM private key of --tls-cert (tls.key)" };
        var transport = new Option<string?>("--transport") { Description = "epoll (default on Linux: the edge's own event loops) or sockets (the runtime's socket engine) for database connections (network.transport)" };
        var epollLoops = new Option<int?>("--epoll-loops") { Description = "event-loop threads of the epoll transport (network.epollLoops, default: one per core)" };
        var epollParking = new Option<bool?>("--epoll-parking") { Description = "true (default) or false: loops beyond the first park while the first keeps up (network.epollParking)" };
        var logLevel = new Option<LogLevel>("--log-level") { Description = "Trace, Debug, Information (default), Warning, Error", DefaultValueFactory = _ => LogLevel.Information };

        var root = new RootCommand("mproxy: a database proxy that pools connections and enforces per-tenant resource budgets")
        {
            configFile, listen, adminListen, primary, poolSize, poolMode, auth, tlsCert, tlsKey, transport, epollLoops, epollParking, logLevel,
        };
        root.SetAction(async (parse, cancellationToken) =>
        {
            EdgeConfig config;
            var overrides = new CommandLineOverrides
            {
                ConfigFile = parse.GetValue(configFile),
                Listen = parse.GetValue(listen),
                AdminListen = parse.GetValue(adminListen),
                Primary = parse.GetValue(primary),
                PoolSize = parse.GetValue(poolSize),
                PoolMode = parse.GetValue(poolMode),
                AuthMethod = parse.GetValue(auth),
                TlsCertificate = parse.GetValue(tlsCert),
                TlsKey = parse.GetValue(tlsKey),
                Transport = parse.GetValue(transport),
                EpollLoops = parse.GetValue(epollLoops),
                EpollParking = parse.GetValue(epollParking),
            };
            try
            {
                config = ConfigLoader.Load(overrides);
            }
            catch (ConfigException e)
            {
                await Console.Error.WriteLineAsync($"mproxy: configuration error: {e.Message}");
                return 2;
            }
            try
            {
                await using var app = EdgeHost.Build(config, parse.GetValue(logLevel), source: overrides);
                await app.RunAsync();
                return 0;
            }
            catch (IOException e)
            {
                await Console.Error.WriteLineAsync($"mproxy: cannot start: {e.Message}");
                return 1;
            }
        });
        return await root.Parse(args).InvokeAsync();
    }
}
