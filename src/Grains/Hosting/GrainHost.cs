using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using MProxy.Grains.Storage;

namespace MProxy.Grains.Hosting;

/// <summary>
/// Hosts grains on a grain store: activates a grain on its first call, runs one call per key at a
/// time (an in-process gate, and the store's record lock across hosts), caches the last state it
/// committed so an unchanged record is not deserialized again, and deactivates grains idle for
/// <see cref="GrainHostOptions.IdleTimeout"/>. Grain logic is handed to it as a pure function
/// <c>(state, now) → (state', reply)</c>; returning the same state instance writes nothing.
/// </summary>
public sealed partial class GrainHost : IAsyncDisposable
{
    private readonly IGrainStore _store;
    private readonly TimeProvider _time;
    private readonly ILogger _log;
    private readonly GrainHostOptions _options;
    private readonly Dictionary<GrainKey, Activation> _activations = [];
    private readonly ITimer _collector;

    public GrainHost(IGrainStore store, TimeProvider time, ILogger<GrainHost>? log = null, GrainHostOptions? options = null)
    {
        _store = store;
        _time = time;
        _log = (ILogger?)log ?? NullLogger.Instance;
        _options = options ?? new GrainHostOptions();
        _collector = time.CreateTimer(_ => Collect(), null, _options.CollectionInterval, _options.CollectionInterval);
    }

    public IGrainStore Store => _store;

    public TimeProvider Time => _time;

    public int ActivationCount
    {
        get
        {
            lock (_activations)
                return _activations.Count;
        }
    }

    public bool IsActive(GrainKey key)
    {
        lock (_activations)
            return _activations.ContainsKey(key);
    }

    /// <summary>Runs one call on grain <paramref name="key"/>: locks it, applies <paramref name="call"/> to its state (null: new grain), writes the result.</summary>
    public async Task<TReply> CallAsync<TState, TReply>(
        GrainKey key, JsonTypeInfo<TState> json, Func<TState?, DateTimeOffset, (TState State, TReply Reply)> call, CancellationToken cancellationToken)
        where TState : class
    {
        var activation = Enter(key);
        try
        {
            await activation.Gate.WaitAsync(cancellationToken).ConfigureAwait(false);
            try
            {
                await using var transaction = await _store.LockAsync(key, cancellationToken).ConfigureAwait(false);
                var version = transaction.Version;
                TState? state = null;
                if (version != 0)
                {
                    state = version == activation.Version && activation.State is TState cached
                        ? cached
                        : JsonSerializer.Deserialize(transaction.State.Span, json) ?? throw new JsonException($"grain {key}: stored state is null");
                }
                var now = _time.GetUtcNow();
                var (next, reply) = call(state, now);
                if (ReferenceEquals(next, state))
                {
                    await transaction.CommitAsync(null, now, cancellationToken).ConfigureAwait(false);
                    activation.Remember(version, state);
                }
                else
                {
                    var bytes = JsonSerializer.SerializeToUtf8Bytes(next, json);
                    await transaction.CommitAsync(bytes, now, cancellationToken).ConfigureAwait(false);
                    activation.Remember(version + 1, next);
                }
                return reply;
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                activation.Remember(0, null);
                CallFailed(_log, key.Type, key.Key, e);
                throw;
            }
            finally
            {
                activation.Gate.Release();
            }
        }
        finally
        {
            Leave(activation);
        }
    }

    /// <summary>Reads a grain's last committed state without activating or locking it (null: never written).</summary>
    public async Task<TState?> ReadAsync<TState>(GrainKey key, JsonTypeInfo<TState> json, CancellationToken cancellationToken) where TState : class
    {
        var stored = await _store.ReadAsync(key, cancellationToken).ConfigureAwait(false);
        return stored is null ? null : JsonSerializer.Deserialize(stored.State.Span, json);
    }

    /// <summary>Every written grain of one type with its state, in key order.</summary>
    public async Task<IReadOnlyList<(string Key, TState State)>> ListAsync<TState>(string type, JsonTypeInfo<TState> json, CancellationToken cancellationToken)
        where TState : class
    {
        var stored = await _store.ListAsync(type, cancellationToken).ConfigureAwait(false);
        var list = new List<(string, TState)>(stored.Count);
        foreach (var grain in stored)
            if (JsonSerializer.Deserialize(grain.State.Span, json) is { } state)
                list.Add((grain.Key.Key, state));
        return list;
    }

    /// <summary>Deactivates grains with no call in progress and none for the idle timeout; returns how many.</summary>
    public int Collect()
    {
        var now = _time.GetUtcNow();
        var collected = 0;
        lock (_activations)
        {
            List<GrainKey>? idle = null;
            foreach (var (key, activation) in _activations)
                if (activation.Calls == 0 && now - activation.LastUsed >= _options.IdleTimeout)
                    (idle ??= []).Add(key);
            if (idle is null)
                return 0;
            foreach (var key in idle)
            {
                _activations.Remove(key);
                collected++;
                Deactivated(_log, key.Type, key.Key);
            }
        }
        return collected;
    }

    public async ValueTask DisposeAsync()
    {
        await _collector.DisposeAsync().ConfigureAwait(false);
        lock (_activations)
            _activations.Clear();
    }

    private Activation Enter(GrainKey key)
    {
        lock (_activations)
        {
            if (!_activations.TryGetValue(key, out var activation))
            {
                activation = new Activation();
                _activations.Add(key, activation);
                Activated(_log, key.Type, key.Key);
            }
            activation.Calls++;
            return activation;
        }
    }

    private void Leave(Activation activation)
    {
        lock (_activations)
        {
            activation.Calls--;
            activation.LastUsed = _time.GetUtcNow();
        }
    }

    private sealed class Activation
    {
        public readonly SemaphoreSlim Gate = new(1, 1);

        /// <summary>Calls in progress or waiting; guarded by the host's activation lock.</summary>
        public int Calls;

        public DateTimeOffset LastUsed;

        public long Version { get; private set; }

        public object? State { get; private set; }

        /// <summary>Called under <see cref="Gate"/>.</summary>
        public void Remember(long version, object? state)
        {
            Version = version;
            State = state;
        }
    }

    [LoggerMessage(EventId = 600, Level = LogLevel.Debug, Message = "Grain {Type}/{Key} activated")]
    private static partial void Activated(ILogger logger, string type, string key);

    [LoggerMessage(EventId = 601, Level = LogLevel.Debug, Message = "Grain {Type}/{Key} deactivated (idle)")]
    private static partial void Deactivated(ILogger logger, string type, string key);

    [LoggerMessage(EventId = 602, Level = LogLevel.Warning, Message = "Call on grain {Type}/{Key} failed")]
    private static partial void CallFailed(ILogger logger, string type, string key, Exception exception);
}

public sealed record GrainHostOptions
{
    /// <summary>A grain with no call for this long is deactivated (its state stays in the store).</summary>
    public TimeSpan IdleTimeout { get; init; } = TimeSpan.FromMinutes(5);

    public TimeSpan CollectionInterval { get; init; } = TimeSpan.FromMinutes(1);
}
