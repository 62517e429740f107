namespace MProxy.Grains.Storage;

/// <summary>
/// Durable grain state: one record per grain (type, key, version, state as UTF-8 JSON, updated at).
/// A call locks its grain's record for the length of a transaction (<see cref="LockAsync"/>), so any
/// number of hosts may share one store and still run one writer per key at a time.
/// </summary>
public interface IGrainStore
{
    /// <summary>A short name for logs and /readyz (never a connection string).</summary>
    string Name { get; }

    /// <summary>Creates or migrates whatever the store needs; safe to run from several hosts at once.</summary>
    Task InitializeAsync(CancellationToken cancellationToken);

    /// <summary>Begins a transaction holding the grain's lock; disposing it without <see cref="IGrainTransaction.CommitAsync"/> rolls back.</summary>
    Task<IGrainTransaction> LockAsync(GrainKey key, CancellationToken cancellationToken);

    /// <summary>Reads a grain's last committed state without locking (null: never written).</summary>
    Task<StoredGrain?> ReadAsync(GrainKey key, CancellationToken cancellationToken);

    /// <summary>Every written grain of one type.</summary>
    Task<IReadOnlyList<StoredGrain>> ListAsync(string type, CancellationToken cancellationToken);

    /// <summary>True when the store answers; for /readyz.</summary>
    Task<bool> PingAsync(CancellationToken cancellationToken);
}

/// <summary>One grain's record, locked. <see cref="Version"/> 0 means the grain has no state yet.</summary>
public interface IGrainTransaction : IAsyncDisposable
{
    long Version { get; }

    ReadOnlyMemory<byte> State { get; }

    /// <summary>Writes <paramref name="state"/> as version <see cref="Version"/> + 1 (null: unchanged) and releases the lock.</summary>
    Task CommitAsync(ReadOnlyMemory<byte>? state, DateTimeOffset now, CancellationToken cancellationToken);
}

public sealed record StoredGrain(GrainKey Key, long Version, ReadOnlyMemory<byte> State, DateTimeOffset UpdatedAt);
