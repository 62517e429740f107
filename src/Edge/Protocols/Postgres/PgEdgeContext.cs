using Microsoft.Extensions.Logging;
using MProxy.Edge.Configuration;
using MProxy.Edge.Networking;
using MProxy.Edge.Sessions;

namespace MProxy.Edge.Protocols.Postgres;

/// <summary>The services every PostgreSQL client session shares.</summary>
internal sealed class PgEdgeContext(
    ConfigStore config,
    ClientRegistry clients,
    PgPoolRegistry pools,
    INetworkConnector connector,
    TimeProvider time,
    ILoggerFactory loggers,
    MProxy.Edge.Qos.QosGate? qos = null,
    MProxy.Edge.Telemetry.EdgeTelemetry? telemetry = null,
    MProxy.Edge.Admin.AdminConsole? admin = null)
{
    /// <summary>Metrics and traces of request units (null: not recorded).</summary>
    public MProxy.Edge.Telemetry.EdgeTelemetry? Telemetry { get; } = telemetry;

    /// <summary>The admin console behind the virtual database <c>mproxy</c> (null: refused).</summary>
    public MProxy.Edge.Admin.AdminConsole? Admin { get; } = admin;

    /// <summary>The QoS gate; its configuration says whether QoS is on.</summary>
    public MProxy.Edge.Qos.QosGate? Qos { get; } = qos;

    public ConfigStore Config { get; } = config;
    public ClientRegistry Clients { get; } = clients;
    public PgPoolRegistry Pools { get; } = pools;
    public INetworkConnector Connector { get; } = connector;
    public TimeProvider Time { get; } = time;
    public ILogger Log { get; } = loggers.CreateLogger("MProxy.Edge.Postgres");
}
