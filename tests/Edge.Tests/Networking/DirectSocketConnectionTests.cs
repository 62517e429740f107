using System.Net;
using MProxy.Edge.Networking;

namespace MProxy.Edge.Tests.Networking;

/// <summary>The direct socket transport over real loopback sockets: what the pumps and sessions rely on.</summary>
public sealed class DirectSocketConnectionTests : SocketTransportContract
{
    protected override INetworkConnector Connector { get; } = new SocketNetworkConnector();

    private protected override DirectSocketListenerFactory ListenerFactory(IReadOnlyCollection<EndPoint> endpoints) => new(endpoints);

    protected override Type ConnectionType => typeof(DirectSocketConnection);
}
