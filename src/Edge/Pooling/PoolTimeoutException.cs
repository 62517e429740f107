namespace MProxy.Edge.Pooling;

/// <summary>A client waited for a server connection longer than the pool allows.</summary>
public sealed class PoolTimeoutException(string poolName, int size, TimeSpan waited)
    : Exception($"mproxy: pool {poolName} is full ({size} of {size} server connections in use); waited {waited.TotalMilliseconds:0} ms for one")
{
    public string PoolName { get; } = poolName;
    public int Size { get; } = size;
    public TimeSpan Waited { get; } = waited;
}

/// <summary>The pool is closed (the edge is stopping, a reload removed it, or its host was lost) and hands out no more connections.</summary>
public sealed class PoolClosedException(string poolName, string reason)
    : Exception($"mproxy: pool {poolName} was closed: {reason}")
{
    public string Reason { get; } = reason;
}
