namespace MProxy.Edge.Pooling;

/// <summary>
/// What a pool learned from its first server login — PostgreSQL: the ParameterStatus set clients are
/// greeted with; MySQL: that the server login works (and the server's version) — kept by the pool
/// registry under the pool's key, so that it outlives the pool. When a host is lost its pools are
/// closed and recreated on next use; a client that logs in meanwhile is greeted with what the edge
/// already knows instead of needing that host at login, and its statements then wait for the
/// failover (<c>backends.failoverWaitMs</c>) like everyone else's.
/// </summary>
internal sealed class PoolMemory<T> where T : class
{
    private T? _value;

    /// <summary>What the first successful login reported, or null before any.</summary>
    public T? Value => Volatile.Read(ref _value);

    /// <summary>Keeps <paramref name="value"/> unless an earlier login's is kept already.</summary>
    public void Learn(T value) => Interlocked.CompareExchange(ref _value, value, null);
}
