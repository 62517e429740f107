namespace MProxy.Edge.Protocols.Postgres;

/// <summary>The frontend messages that get a response, as the server connection's queue tracks them.</summary>
internal enum PgRequestKind : byte
{
    Query,
    FunctionCall,
    Parse,
    Bind,
    DescribeStatement,
    DescribePortal,
    Execute,
    Close,
    Sync,

    /// <summary>Not sent to the server: the edge's own response, emitted when it reaches the head of the queue.</summary>
    Synthetic,
}

/// <summary>Where the responses to one request go.</summary>
internal enum PgResponseMode : byte
{
    /// <summary>To the attached client: it sent the request.</summary>
    Forward,

    /// <summary>Nowhere: the edge sent the request for itself (check, reset, rollback).</summary>
    Swallow,

    /// <summary>Nowhere, but ParameterStatus updates the attached client's values: the edge's SET that aligns parameters.</summary>
    SwallowParameterSync,

    /// <summary>Success responses nowhere, errors to the client: the edge re-preparing a statement the client's next request uses.</summary>
    SwallowSuccess,
}

/// <summary>What a request does to a prepared statement the edge tracks on the server connection.</summary>
internal enum PgStatementOp : byte
{
    None,

    /// <summary>Prepares the statement (a Parse, or an SQL PREPARE): undone if it fails or is skipped.</summary>
    Prepare,

    /// <summary>Closes the statement (eviction): undone if it is skipped.</summary>
    Close,

    /// <summary>Uses the statement (Bind, Describe, EXECUTE): a stale cached plan invalidates it.</summary>
    Use,
}

/// <summary>A request the edge sent for itself, completed when its ReadyForQuery arrives.</summary>
internal sealed class PgInternalRequest
{
    private readonly TaskCompletionSource<string?> _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Completes with null on success, or the server's error message.</summary>
    public Task<string?> Task => _completion.Task;

    public string? Error { get; set; }

    /// <summary>When set, receives the first column of the first row (null on error) at completion.</summary>
    public Action<string?>? OnValue { get; init; }

    public string? Value { get; set; }

    public void Complete()
    {
        OnValue?.Invoke(Error is null ? Value : null);
        _completion.TrySetResult(Error);
    }

    public void Fail(Exception exception)
    {
        OnValue?.Invoke(null);
        _completion.TrySetException(exception);
    }
}

/// <summary>One request awaiting its responses.</summary>
/// <param name="Kind">What was sent.</param>
/// <param name="Mode">Where its responses go.</param>
/// <param name="Internal">For the edge's own requests: completed at ReadyForQuery.</param>
/// <param name="Unit">The client's request unit (QoS statement) this request ends, or 0.</param>
/// <param name="Synthetic">For <see cref="PgRequestKind.Synthetic"/>: the bytes to emit.</param>
/// <param name="SyntheticReadyForQuery">For <see cref="PgRequestKind.Synthetic"/>: also emit ReadyForQuery with the server's current status.</param>
/// <param name="Op">What the request does to <paramref name="Statement"/>.</param>
/// <param name="Statement">The prepared statement the request prepares, closes or uses.</param>
/// <param name="ClientStatement">The client's name registered by this (client's) Parse, forgotten if it fails.</param>
/// <param name="Generation">For <see cref="PgStatementOp.Close"/>: the generation that was prepared.</param>
internal readonly record struct PgPendingRequest(
    PgRequestKind Kind, PgResponseMode Mode, PgInternalRequest? Internal = null, int Unit = 0, byte[]? Synthetic = null, bool SyntheticReadyForQuery = false,
    PgStatementOp Op = PgStatementOp.None, PgStatement? Statement = null, PgClientStatement? ClientStatement = null, int Generation = 0)
{
    /// <summary>Extended-protocol requests are skipped by the server after an error, up to the next Sync.</summary>
    public bool IsExtended => Kind is not (PgRequestKind.Query or PgRequestKind.FunctionCall or PgRequestKind.Sync or PgRequestKind.Synthetic);

    /// <summary>Requests answered by ReadyForQuery.</summary>
    public bool EndsWithReadyForQuery => Kind is PgRequestKind.Query or PgRequestKind.FunctionCall or PgRequestKind.Sync;

    /// <summary>Whether <paramref name="code"/> is the last response to this request (ErrorResponse and ReadyForQuery are handled apart).</summary>
    public bool IsCompletedBy(byte code) => Kind switch
    {
        PgRequestKind.Parse => code == (byte)PgBackendCode.ParseComplete,
        PgRequestKind.Bind => code == (byte)PgBackendCode.BindComplete,
        PgRequestKind.Close => code == (byte)PgBackendCode.CloseComplete,
        PgRequestKind.DescribeStatement or PgRequestKind.DescribePortal =>
            code is (byte)PgBackendCode.RowDescription or (byte)PgBackendCode.NoData,
        PgRequestKind.Execute =>
            code is (byte)PgBackendCode.CommandComplete or (byte)PgBackendCode.EmptyQueryResponse or (byte)PgBackendCode.PortalSuspended,
        _ => false,
    };
}

/// <summary>
/// The requests sent on one server connection whose responses have not all arrived, oldest first
/// (a ring buffer of structs: no allocation once it has grown to the pipeline depth).
/// </summary>
internal sealed class PgRequestQueue
{
    private PgPendingRequest[] _items = new PgPendingRequest[16];
    private int _head;
    private int _count;

    public int Count => _count;

    /// <summary>Requests answered by ReadyForQuery still pending (Query, FunctionCall, Sync).</summary>
    public int PendingSyncs { get; private set; }

    public ref readonly PgPendingRequest Head => ref _items[_head];

    public void Enqueue(in PgPendingRequest request)
    {
        if (_count == _items.Length)
            Grow();
        _items[(_head + _count) % _items.Length] = request;
        _count++;
        if (request.EndsWithReadyForQuery)
            PendingSyncs++;
    }

    public PgPendingRequest Dequeue()
    {
        var item = _items[_head];
        _items[_head] = default;
        _head = (_head + 1) % _items.Length;
        _count--;
        if (item.EndsWithReadyForQuery)
            PendingSyncs--;
        return item;
    }

    /// <summary>Removes all requests, failing the internal ones (the connection is going away).</summary>
    public void Clear(Exception reason)
    {
        while (_count > 0)
            Dequeue().Internal?.Fail(reason);
    }

    private void Grow()
    {
        var bigger = new PgPendingRequest[_items.Length * 2];
        for (var i = 0; i < _count; i++)
            bigger[i] = _items[(_head + i) % _items.Length];
        _items = bigger;
        _head = 0;
    }
}
