using System.Collections.Concurrent;
using System.Security.Cryptography;

namespace MProxy.Edge.Sessions;

/// <summary>What the registry needs from a client session, whatever its protocol.</summary>
public interface IClientSession
{
    /// <summary>The key the edge handed this client (PostgreSQL BackendKeyData), for cancel requests.</summary>
    int ProcessId { get; }

    int SecretKey { get; }

    /// <summary>Asks the session to close at its next transaction boundary (now, if it is between transactions).</summary>
    void RequestShutdown();

    /// <summary>Closes the connection now, whatever it is doing.</summary>
    void Abort(string reason);
}

/// <summary>
/// The connected clients of this edge: the connection cap, the keys for cancel requests, and the
/// drain on shutdown.
/// </summary>
public sealed class ClientRegistry
{
    private readonly ConcurrentDictionary<int, IClientSession> _sessions = new();
    private int _nextId;
    private int _count;
    private volatile bool _shuttingDown;

    public int Count => Volatile.Read(ref _count);

    public bool ShuttingDown => _shuttingDown;

    public ICollection<IClientSession> Sessions => _sessions.Values;

    /// <summary>A fresh process id and secret for a client's BackendKeyData.</summary>
    public (int ProcessId, int SecretKey) NewKey()
    {
        int id;
        do
        {
            id = Interlocked.Increment(ref _nextId) & int.MaxValue;
        }
        while (id == 0 || _sessions.ContainsKey(id));
        return (id, RandomNumberGenerator.GetInt32(int.MinValue, int.MaxValue));
    }

    /// <summary>Registers a logged-in client; false when the edge already has <paramref name="maxConnections"/> or is shutting down.</summary>
    public bool TryRegister(IClientSession session, int maxConnections)
    {
        if (_shuttingDown)
            return false;
        if (Interlocked.Increment(ref _count) > maxConnections)
        {
            Interlocked.Decrement(ref _count);
            return false;
        }
        _sessions[session.ProcessId] = session;
        return true;
    }

    public void Unregister(IClientSession session)
    {
        if (_sessions.TryRemove(new KeyValuePair<int, IClientSession>(session.ProcessId, session)))
            Interlocked.Decrement(ref _count);
    }

    /// <summary>Finds the client a cancel request names; the secret is compared in constant time.</summary>
    public IClientSession? FindForCancel(int processId, int secretKey)
    {
        if (!_sessions.TryGetValue(processId, out var session))
            return null;
        Span<byte> expected = stackalloc byte[4];
        Span<byte> actual = stackalloc byte[4];
        BitConverter.TryWriteBytes(expected, session.SecretKey);
        BitConverter.TryWriteBytes(actual, secretKey);
        return CryptographicOperations.FixedTimeEquals(expected, actual) ? session : null;
    }

    /// <summary>
    /// Graceful shutdown: refuses new clients, closes each client at its next transaction boundary,
    /// and aborts whoever is still connected when <paramref name="timeout"/> runs out.
    /// </summary>
    public async Task DrainAsync(TimeSpan timeout, TimeProvider time, CancellationToken cancellationToken = default)
    {
        _shuttingDown = true;
        var started = time.GetTimestamp();
        while (Count > 0 && time.GetElapsedTime(started) < timeout && !cancellationToken.IsCancellationRequested)
        {
            foreach (var session in _sessions.Values)
                session.RequestShutdown();
            try
            {
                await Task.Delay(TimeSpan.FromMilliseconds(50), time, cancellationToken);
            }
            catch (OperationCanceledException)
            {
                break;
            }
        }
        foreach (var session in _sessions.Values)
            session.Abort("the shutdown timeout ran out");
    }
}
