using System.Net;

namespace MProxy.Silo.Hosting;

/// <summary>What the silo is started with (its command line).</summary>
public sealed record SiloOptions
{
    public const string MemoryStore = "memory";

    /// <summary>The edge API's address: HTTP/2 cleartext with prior knowledge (h2c), what edges call.</summary>
    public IPEndPoint Listen { get; init; } = new(IPAddress.Loopback, 7070);

    /// <summary>
    /// The dashboard's address: HTTP/1.1 for browsers and probes (dashboard, its JSON API, /healthz,
    /// /readyz); null: off. Kestrel cannot offer HTTP/1.1 and h2c on one cleartext port, hence two.
    /// </summary>
    public IPEndPoint? DashboardListen { get; init; } = new(IPAddress.Loopback, 7071);

    /// <summary><c>memory</c>, or a PostgreSQL connection string (<c>Host=…;Database=…</c> or <c>postgres://user:password@host:port/database</c>).</summary>
    public string Store { get; init; } = MemoryStore;

    /// <summary>The policy file (YAML or JSON); null: no budgets (every tenant unlimited) until one is given.</summary>
    public string? PolicyFile { get; init; }

    /// <summary>How often the policy file is checked for changes.</summary>
    public TimeSpan PolicyReloadInterval { get; init; } = TimeSpan.FromSeconds(5);
}
