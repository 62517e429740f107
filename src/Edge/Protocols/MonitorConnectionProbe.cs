using System.Collections.Concurrent;
using System.IO.Pipelines;
using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.Logging;
using MProxy.Edge.Backends;
using MProxy.Edge.Configuration;
using MProxy.Edge.Networking;

namespace MProxy.Edge.Protocols;

/// <summary>
/// Health checks over one dedicated monitoring connection per host, logged in with the monitor's
/// credentials and reused from probe to probe. A connection that fails, times out or breaks the
/// protocol is closed; the next probe reconnects. The protocol adapter supplies the login, the query
/// and its parsing, and the goodbye message.
/// </summary>
/// <remarks>Thread-safe: probes of different hosts run concurrently, probes of one host one at a time.</remarks>
internal abstract class MonitorConnectionProbe(MonitorCredentials credentials, INetworkConnector connector, TimeProvider time, ILogger log)
    : IBackendProbe, IAsyncDisposable
{
    private readonly ConcurrentDictionary<HostPort, ProbeConnection> _connections = new();

    protected MonitorCredentials Credentials { get; } = credentials;

    public async ValueTask<BackendProbeResult> ProbeAsync(HostPort endpoint, CancellationToken cancellationToken)
    {
        var connection = _connections.GetOrAdd(endpoint, static e => new ProbeConnection(e));
        await connection.Gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (connection.Transport is null)
                await ConnectAsync(connection, cancellationToken).ConfigureAwait(false);
            return await QueryAsync(connection.Transport!.Transport, cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            await CloseAsync(connection, "the health check was cancelled or timed out").ConfigureAwait(false);
            throw;
        }
        catch (Exception e)
        {
            var reason = DescribeFailure(e);
            await CloseAsync(connection, reason).ConfigureAwait(false);
            return BackendProbeResult.Failed(reason);
        }
        finally
        {
            connection.Gate.Release();
        }
    }

    /// <summary>Logs in on a new monitoring connection (throws when the server refuses).</summary>
    protected abstract Task LoginAsync(IDuplexPipe transport, CancellationToken cancellationToken);

    /// <summary>Runs the health check on a logged-in connection; throws when the connection must be closed.</summary>
    protected abstract Task<BackendProbeResult> QueryAsync(IDuplexPipe transport, CancellationToken cancellationToken);

    /// <summary>Writes the protocol's goodbye (Terminate, COM_QUIT) before the connection is closed.</summary>
    protected abstract void WriteGoodbye(PipeWriter output);

    /// <summary>Why a probe failed, for the log and the topology (no secrets).</summary>
    protected virtual string DescribeFailure(Exception e) => e.Message;

    private async Task ConnectAsync(ProbeConnection connection, CancellationToken cancellationToken)
    {
        var transport = await connector.ConnectAsync(connection.Endpoint, cancellationToken).ConfigureAwait(false);
        try
        {
            await LoginAsync(transport.Transport, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            await transport.DisposeAsync().ConfigureAwait(false);
            throw;
        }
        connection.Transport = transport;
        BackendsLog.ProbeConnected(log, connection.Endpoint.ToString(), Credentials.User);
    }

    private async Task CloseAsync(ProbeConnection connection, string reason)
    {
        if (connection.Transport is not { } transport)
            return;
        connection.Transport = null;
        BackendsLog.ProbeDisconnected(log, connection.Endpoint.ToString(), reason);
        try
        {
            WriteGoodbye(transport.Transport.Output);
            await transport.Transport.Output.FlushAsync().AsTask().WaitAsync(TimeSpan.FromMilliseconds(100), time).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or TimeoutException or OperationCanceledException or InvalidOperationException or ConnectionResetException)
        {
            // the server may already be gone
        }
        try
        {
            await transport.DisposeAsync().ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException)
        {
            // already closed
        }
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var connection in _connections.Values)
        {
            await connection.Gate.WaitAsync().ConfigureAwait(false);
            try
            {
                await CloseAsync(connection, "the monitor stopped").ConfigureAwait(false);
            }
            finally
            {
                connection.Gate.Release();
            }
        }
    }

    private sealed class ProbeConnection(HostPort endpoint)
    {
        public HostPort Endpoint { get; } = endpoint;

        public SemaphoreSlim Gate { get; } = new(1, 1);

        public ConnectionContext? Transport { get; set; }
    }
}
