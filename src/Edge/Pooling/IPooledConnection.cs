namespace MProxy.Edge.Pooling;

/// <summary>What a pool needs to know about one server connection, whatever its protocol.</summary>
public interface IPooledConnection
{
    long Id { get; }

    /// <summary>True once the connection must not be reused (I/O error, protocol error, server gone).</summary>
    bool IsBroken { get; }

    /// <summary>When the connection was opened, as a <see cref="TimeProvider.GetTimestamp"/> value.</summary>
    long OpenedAt { get; }

    /// <summary>When the connection last went idle in the pool, as a <see cref="TimeProvider.GetTimestamp"/> value.</summary>
    long IdleSince { get; set; }

    /// <summary>
    /// The event loop whose thread completes the connection's I/O (-1: none in particular). The pool
    /// hands a returned connection to a waiter on the same loop first (<see cref="ServerPool{TConnection}.AcquireAsync(int, CancellationToken)"/>).
    /// </summary>
    int Affinity => -1;
}

/// <summary>Opens, checks and closes server connections for one pool: the protocol adapter's side of pooling.</summary>
public interface IServerConnectionFactory<TConnection>
    where TConnection : class, IPooledConnection
{
    /// <summary>Opens and authenticates a new connection, ready for queries.</summary>
    ValueTask<TConnection> OpenAsync(CancellationToken cancellationToken);

    /// <summary>Runs the pool's check query; false (or an exception) means the connection is unusable.</summary>
    ValueTask<bool> CheckAsync(TConnection connection, CancellationToken cancellationToken);

    /// <summary>Closes the connection politely, in the background; never throws.</summary>
    void Close(TConnection connection, string reason);
}
