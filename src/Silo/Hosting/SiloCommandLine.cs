using System.CommandLine;
using MProxy.Grains.Configuration;

namespace MProxy.Silo.Hosting;

/// <summary>The <c>mproxy-silo</c> command line.</summary>
public static class SiloCommandLine
{
    public static async Task<int> RunAsync(string[] args)
    {
        var listen = new Option<string>("--listen") { Description = "edge API address host:port, HTTP/2 cleartext (default 127.0.0.1:7070)", DefaultValueFactory = _ => "127.0.0.1:7070" };
        var dashboardListen = new Option<string>("--dashboard-listen") { Description = "dashboard, /api/dashboard, /healthz, /readyz address host:port, HTTP/1.1; 'off' to disable (default 127.0.0.1:7071)", DefaultValueFactory = _ => "127.0.0.1:7071" };
        var store = new Option<string>("--store") { Description = "grain store: 'memory' (default) or a PostgreSQL connection string / postgres:// URL", DefaultValueFactory = _ => SiloOptions.MemoryStore };
        var policy = new Option<string?>("--policy") { Description = "policy file (YAML or JSON): tenants' RU budgets, backends' connection limits, runaway thresholds; reloaded when it changes" };
        var logLevel = new Option<LogLevel>("--log-level") { Description = "Trace, Debug, Information (default), Warning, Error", DefaultValueFactory = _ => LogLevel.Information };
        var root = new RootCommand("mproxy-silo: the policy tier (tenant budgets, runaway verdicts, backend capacity) and its dashboard")
        {
            listen, dashboardListen, store, policy, logLevel,
        };
        root.SetAction(async (parse, cancellationToken) =>
        {
            SiloOptions options;
            try
            {
                options = new SiloOptions
                {
                    Listen = SiloEndPoint.Parse("--listen", parse.GetValue(listen)!),
                    DashboardListen = parse.GetValue(dashboardListen) is "off" ? null : SiloEndPoint.Parse("--dashboard-listen", parse.GetValue(dashboardListen)!),
                    Store = parse.GetValue(store)!,
                    PolicyFile = parse.GetValue(policy),
                };
                if (options.PolicyFile is { } file)
                    PolicyConfigLoader.LoadFile(file);
            }
            catch (PolicyConfigException e)
            {
                await Console.Error.WriteLineAsync($"mproxy-silo: configuration error: {e.Message}");
                return 2;
            }
            try
            {
                await using var app = SiloHost.Build(options, parse.GetValue(logLevel));
                await app.RunAsync(cancellationToken);
                return 0;
            }
            catch (IOException e)
            {
                await Console.Error.WriteLineAsync($"mproxy-silo: cannot start: {e.Message}");
                return 1;
            }
        });
        return await root.Parse(args).InvokeAsync();
    }
}
