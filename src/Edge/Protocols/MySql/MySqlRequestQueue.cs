namespace MProxy.Edge.Protocols.MySql;

/// <summary>Where the responses to one command go.</summary>
internal enum MySqlResponseMode : byte
{
    /// <summary>To the attached client: it sent the command.</summary>
    Forward,

    /// <summary>Nowhere: the edge sent the command for itself (check, reset, re-prepare, session sync).</summary>
    Swallow,

    /// <summary>Not sent to the server: the edge's own response, emitted when it reaches the head of the queue.</summary>
    Synthetic,
}

/// <summary>The outcome of a command the edge sent for itself.</summary>
internal readonly record struct MySqlInternalResult(string? Error, uint StatementId, ushort Parameters);

/// <summary>A command the edge sent for itself, completed when its response is complete.</summary>
internal sealed class MySqlInternalRequest
{
    private readonly TaskCompletionSource<MySqlInternalResult> _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public Task<MySqlInternalResult> Task => _completion.Task;

    public MySqlInternalResult Result { get; set; }

    /// <summary>Receives each whole row packet of the response (called by the pump under the connection's lock: keep it short).</summary>
    public Action<byte[]>? OnRow { get; init; }

    public void Complete() => _completion.TrySetResult(Result);

    public void Fail(Exception exception) => _completion.TrySetException(exception);
}

/// <summary>One command awaiting its response.</summary>
/// <param name="Kind">The response's shape.</param>
/// <param name="Mode">Where it goes.</param>
/// <param name="Unit">The client's request unit (QoS statement) this command ends, or 0.</param>
/// <param name="Internal">For the edge's own commands: completed with the result.</param>
/// <param name="Synthetic">For <see cref="MySqlResponseMode.Synthetic"/>: the packets to emit.</param>
/// <param name="Statement">For a client's COM_STMT_PREPARE: the statement whose id the PREPARE_OK carries to the client.</param>
/// <param name="StatementKey">For a re-prepare by the edge: the text it caches the server statement under.</param>
/// <param name="Variables">The session variables in force after an OK (a tracked SET, or the edge's sync).</param>
/// <param name="Resets">COM_RESET_CONNECTION (or the edge's reset): on OK the server's statements, variables and pin are gone.</param>
internal readonly record struct MySqlPendingRequest(
    MySqlResponseKind Kind,
    MySqlResponseMode Mode,
    int Unit = 0,
    MySqlInternalRequest? Internal = null,
    byte[]? Synthetic = null,
    MySqlClientStatement? Statement = null,
    string? StatementKey = null,
    MySqlSessionVariables? Variables = null,
    bool Resets = false);

/// <summary>The commands sent on one server connection whose responses are not complete, oldest first (a ring buffer of structs).</summary>
internal sealed class MySqlRequestQueue
{
    private MySqlPendingRequest[] _items = new MySqlPendingRequest[8];
    private int _head;
    private int _count;

    public int Count => _count;

    public ref readonly MySqlPendingRequest Head => ref _items[_head];

    public void Enqueue(in MySqlPendingRequest request)
    {
        if (_count == _items.Length)
            Grow();
        _items[(_head + _count) % _items.Length] = request;
        _count++;
    }

    public MySqlPendingRequest Dequeue()
    {
        var item = _items[_head];
        _items[_head] = default;
        _head = (_head + 1) % _items.Length;
        _count--;
        return item;
    }

    /// <summary>Removes all commands, failing the edge's own (the connection is going away).</summary>
    public void Clear(Exception reason)
    {
        while (_count > 0)
            Dequeue().Internal?.Fail(reason);
    }

    private void Grow()
    {
        var bigger = new MySqlPendingRequest[_items.Length * 2];
        for (var i = 0; i < _count; i++)
            bigger[i] = _items[(_head + i) % _items.Length];
        _items = bigger;
        _head = 0;
    }
}
