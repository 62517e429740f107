namespace MProxy.Edge.Configuration;

/// <summary>Settings given on the command line; each one, when present, overrides the file.</summary>
public sealed record CommandLineOverrides
{
    public string? ConfigFile { get; init; }
    public string? Listen { get; init; }
    public string? AdminListen { get; init; }

    /// <summary><c>postgres://user:password@host:port/database</c>: adds that database and that user.</summary>
    public string? Primary { get; init; }

    public int? PoolSize { get; init; }
    public string? PoolMode { get; init; }
    public string? AuthMethod { get; init; }

    /// <summary>PEM certificate for TLS to clients (<c>tls.certificate</c>).</summary>
    public string? TlsCertificate { get; init; }

    /// <summary>PEM private key for TLS to clients (<c>tls.key</c>).</summary>
    public string? TlsKey { get; init; }

    /// <summary><c>sockets</c> or <c>epoll</c> (<c>network.transport</c>).</summary>
    public string? Transport { get; init; }

    /// <summary>Event-loop threads of the epoll transport (<c>network.epollLoops</c>).</summary>
    public int? EpollLoops { get; init; }

    /// <summary>Whether loops beyond the first park while the first keeps up (<c>network.epollParking</c>).</summary>
    public bool? EpollParking { get; init; }
}
