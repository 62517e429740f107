using System.Collections.Concurrent;

namespace MProxy.Grains.Storage;

/// <summary>
/// The grain store of the embedded mode and of tests: records in a dictionary, one lock per key.
/// State is kept as serialized bytes, exactly as the PostgreSQL store keeps it, so a round trip
/// through this store exercises the same serialization. Several hosts may share one instance.
/// </summary>
public sealed class InMemoryGrainStore : IGrainStore
{
    private readonly ConcurrentDictionary<GrainKey, Slot> _slots = new();

    public string Name => "memory";

    public Task InitializeAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public async Task<IGrainTransaction> LockAsync(GrainKey key, CancellationToken cancellationToken)
    {
        var slot = _slots.GetOrAdd(key, static _ => new Slot());
        await slot.Gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        return new Transaction(key, slot);
    }

    public Task<StoredGrain?> ReadAsync(GrainKey key, CancellationToken cancellationToken) =>
        Task.FromResult(_slots.TryGetValue(key, out var slot) ? slot.Record : null);

    public Task<IReadOnlyList<StoredGrain>> ListAsync(string type, CancellationToken cancellationToken)
    {
        var list = new List<StoredGrain>();
        foreach (var (key, slot) in _slots)
            if (key.Type == type && slot.Record is { } record)
                list.Add(record);
        list.Sort((a, b) => string.CompareOrdinal(a.Key.Key, b.Key.Key));
        return Task.FromResult<IReadOnlyList<StoredGrain>>(list);
    }

    public Task<bool> PingAsync(CancellationToken cancellationToken) => Task.FromResult(true);

    private sealed class Slot
    {
        public readonly SemaphoreSlim Gate = new(1, 1);

        public volatile StoredGrain? Record;
    }

    private sealed class Transaction(GrainKey key, Slot slot) : IGrainTransaction
    {
        private readonly StoredGrain? _locked = slot.Record;
        private bool _done;

        public long Version => _locked?.Version ?? 0;

        public ReadOnlyMemory<byte> State => _locked?.State ?? ReadOnlyMemory<byte>.Empty;

        public Task CommitAsync(ReadOnlyMemory<byte>? state, DateTimeOffset now, CancellationToken cancellationToken)
        {
            ObjectDisposedException.ThrowIf(_done, this);
            if (state is { } bytes)
                slot.Record = new StoredGrain(key, Version + 1, bytes.ToArray(), now);
            Release();
            return Task.CompletedTask;
        }

        public ValueTask DisposeAsync()
        {
            Release();
            return ValueTask.CompletedTask;
        }

        private void Release()
        {
            if (_done)
                return;
            _done = true;
            slot.Gate.Release();
        }
    }
}
