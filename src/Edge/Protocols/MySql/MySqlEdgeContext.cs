using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.Logging;
using MProxy.Edge.Configuration;
using MProxy.Edge.Sessions;

namespace MProxy.Edge.Protocols.MySql;

/// <summary>The services every MySQL client session shares.</summary>
internal sealed class MySqlEdgeContext(
    ConfigStore config,
    ClientRegistry clients,
    MySqlPoolRegistry pools,
    TimeProvider time,
    ILoggerFactory loggers,
    MProxy.Edge.Qos.QosGate? qos = null,
    MProxy.Edge.Telemetry.EdgeTelemetry? telemetry = null)
{
    /// <summary>The edge's instruments; null when telemetry is not set up (unit tests).</summary>
    public MProxy.Edge.Telemetry.EdgeTelemetry? Telemetry { get; } = telemetry;

    /// <summary>The QoS gate; its configuration says whether QoS is on.</summary>
    public MProxy.Edge.Qos.QosGate? Qos { get; } = qos;

    public ConfigStore Config { get; } = config;
    public ClientRegistry Clients { get; } = clients;
    public MySqlPoolRegistry Pools { get; } = pools;
    public TimeProvider Time { get; } = time;
    public ILogger Log { get; } = loggers.CreateLogger("MProxy.Edge.MySql");
}

/// <summary>Kestrel's entry point for a connection on the MySQL listener.</summary>
internal sealed class MySqlConnectionHandler(MySqlEdgeContext edge) : ConnectionHandler
{
    public override Task OnConnectedAsync(ConnectionContext connection) =>
        RelayClientSession.RunWithoutExecutionContext(new MySqlClientSession(edge, connection).RunAsync);
}
