using System.Runtime.CompilerServices;
using System.Threading.Tasks.Sources;

namespace MProxy.Edge.Pooling;

/// <summary>
/// The async method builder of the methods on a statement's path that may wait for a server
/// connection (<c>[AsyncMethodBuilder(typeof(PooledValueTaskMethodBuilder&lt;&gt;))]</c>): like the runtime's
/// <see cref="PoolingAsyncValueTaskMethodBuilder{TResult}"/>, a call that suspends keeps its state machine in
/// a reusable box, but the boxes wait in a shared pool per method sized for every client waiting at
/// once. The runtime's builder keeps one box per core and one per thread, so with dozens of clients
/// queued for a full pool every waited lease allocated a box per frame on its stack — about 700 bytes
/// per transaction at 50 clients over 20 server connections, all of the edge's steady-state garbage.
/// </summary>
/// <remarks>
/// The returned <see cref="ValueTask{TResult}"/> must be awaited exactly once (as any pooled
/// <see cref="ValueTask{TResult}"/>): getting its result sends the box back to the pool.
/// </remarks>
internal struct PooledValueTaskMethodBuilder<TResult>
{
    private PooledValueTaskBox<TResult>? _box;
    private TResult? _result;
    private Exception? _exception;

    public static PooledValueTaskMethodBuilder<TResult> Create() => default;

    internal readonly PooledValueTaskBox<TResult>? Box => _box;

    internal readonly Exception? Exception => _exception;

    public readonly ValueTask<TResult> Task =>
        _box is { } box ? new ValueTask<TResult>(box, box.Version)
        : _exception is { } exception ? ValueTask.FromException<TResult>(exception)
        : new ValueTask<TResult>(_result!);

    public readonly void Start<TStateMachine>(ref TStateMachine stateMachine)
        where TStateMachine : IAsyncStateMachine =>
        default(AsyncValueTaskMethodBuilder<TResult>).Start(ref stateMachine); // runs MoveNext, restoring the caller's contexts

    /// <remarks>Unused: the box is made at the first await that suspends.</remarks>
    public readonly void SetStateMachine(IAsyncStateMachine stateMachine)
    {
    }

    public void SetResult(TResult result)
    {
        if (_box is null)
            _result = result;
        else
            _box.SetResult(result);
    }

    public void SetException(Exception exception)
    {
        if (_box is null)
            _exception = exception;
        else
            _box.SetException(exception);
    }

    public void AwaitOnCompleted<TAwaiter, TStateMachine>(ref TAwaiter awaiter, ref TStateMachine stateMachine)
        where TAwaiter : INotifyCompletion
        where TStateMachine : IAsyncStateMachine =>
        awaiter.OnCompleted(BoxFor(ref stateMachine).MoveNextAction);

    public void AwaitUnsafeOnCompleted<TAwaiter, TStateMachine>(ref TAwaiter awaiter, ref TStateMachine stateMachine)
        where TAwaiter : ICriticalNotifyCompletion
        where TStateMachine : IAsyncStateMachine =>
        awaiter.UnsafeOnCompleted(BoxFor(ref stateMachine).MoveNextAction);

    private PooledValueTaskBox<TResult, TStateMachine> BoxFor<TStateMachine>(ref TStateMachine stateMachine)
        where TStateMachine : IAsyncStateMachine
    {
        if (_box is not PooledValueTaskBox<TResult, TStateMachine> box)
        {
            // First suspension, on the caller's stack: the builder learns its box before the state
            // machine (this builder included) is copied into it, so later awaits find it there.
            box = PooledValueTaskBox<TResult, TStateMachine>.Rent();
            _box = box;
            box.StateMachine = stateMachine;
        }
        box.Context = ExecutionContext.Capture();
        return box;
    }
}

/// <summary>The <see cref="PooledValueTaskMethodBuilder{TResult}"/> of methods that return a <see cref="ValueTask"/>.</summary>
internal struct PooledValueTaskMethodBuilder
{
    private PooledValueTaskMethodBuilder<PooledValueTaskBox.Nothing> _inner;

    public static PooledValueTaskMethodBuilder Create() => default;

    public readonly ValueTask Task =>
        _inner.Box is { } box ? new ValueTask(box, box.Version)
        : _inner.Exception is { } exception ? ValueTask.FromException(exception)
        : default;

    public readonly void Start<TStateMachine>(ref TStateMachine stateMachine)
        where TStateMachine : IAsyncStateMachine =>
        _inner.Start(ref stateMachine);

    public readonly void SetStateMachine(IAsyncStateMachine stateMachine)
    {
    }

    public void SetResult() => _inner.SetResult(default);

    public void SetException(Exception exception) => _inner.SetException(exception);

    public void AwaitOnCompleted<TAwaiter, TStateMachine>(ref TAwaiter awaiter, ref TStateMachine stateMachine)
        where TAwaiter : INotifyCompletion
        where TStateMachine : IAsyncStateMachine =>
        _inner.AwaitOnCompleted(ref awaiter, ref stateMachine);

    public void AwaitUnsafeOnCompleted<TAwaiter, TStateMachine>(ref TAwaiter awaiter, ref TStateMachine stateMachine)
        where TAwaiter : ICriticalNotifyCompletion
        where TStateMachine : IAsyncStateMachine =>
        _inner.AwaitUnsafeOnCompleted(ref awaiter, ref stateMachine);
}

/// <summary>What the boxes of <see cref="PooledValueTaskMethodBuilder{TResult}"/> share.</summary>
internal static class PooledValueTaskBox
{
    /// <summary>Boxes kept per method: more than the clients an edge has waiting at once in practice; beyond it they are dropped.</summary>
    public const int PoolCapacity = 1024;

    /// <summary>Boxes each thread keeps per method before the shared pool: its free boxes, enough for the turnover of a loop's waiting clients (those waiting hold theirs).</summary>
    public const int ThreadCapacity = 64;

    /// <summary>The result of a method that returns a <see cref="ValueTask"/>.</summary>
    public readonly struct Nothing;
}

/// <summary>A suspended call's completion: the <see cref="IValueTaskSource{TResult}"/> behind its <see cref="ValueTask{TResult}"/>.</summary>
internal abstract class PooledValueTaskBox<TResult> : IValueTaskSource<TResult>, IValueTaskSource
{
    private ManualResetValueTaskSourceCore<TResult> _core; // continuations run inline, as the runtime's builder runs them

    /// <summary>The execution context to resume in (null: flow was suppressed when the call suspended).</summary>
    internal ExecutionContext? Context { get; set; }

    internal short Version => _core.Version;

    internal void SetResult(TResult result) => _core.SetResult(result);

    internal void SetException(Exception exception) => _core.SetException(exception);

    public TResult GetResult(short token)
    {
        if (token != _core.Version)
            throw new InvalidOperationException("a pooled ValueTask was awaited after its result was taken");
        try
        {
            return _core.GetResult(token);
        }
        finally
        {
            _core.Reset();
            Context = null;
            Recycle();
        }
    }

    void IValueTaskSource.GetResult(short token) => GetResult(token);

    public ValueTaskSourceStatus GetStatus(short token) => _core.GetStatus(token);

    public void OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _core.OnCompleted(continuation, state, token, flags);

    /// <summary>Clears the state machine and puts the box back in its pool (its result was taken).</summary>
    private protected abstract void Recycle();
}

/// <summary>The box of one async method's state machine, and that method's pool of them.</summary>
/// <remarks>
/// Each thread keeps up to <see cref="PooledValueTaskBox.ThreadCapacity"/> boxes of its own in front of
/// the shared pool: a waited lease rents and recycles boxes on the event loop that runs the client, so
/// most boxes go round without the shared pool's lock, whose cache line the two loops would otherwise
/// pass back and forth several times per statement. A thread whose own boxes run out rents from the
/// shared pool; one whose own are full recycles into it. A thread that ends leaves its boxes to the
/// collector (the loops, and the thread pool's threads, live as long as the edge).
/// </remarks>
internal sealed class PooledValueTaskBox<TResult, TStateMachine> : PooledValueTaskBox<TResult>
    where TStateMachine : IAsyncStateMachine
{
    [ThreadStatic]
    private static PooledValueTaskBox<TResult, TStateMachine>?[]? t_boxes;
    [ThreadStatic]
    private static int t_count;

    private static readonly Lock PoolLock = new();
    private static readonly PooledValueTaskBox<TResult, TStateMachine>?[] Pool = new PooledValueTaskBox<TResult, TStateMachine>?[PooledValueTaskBox.PoolCapacity];
    private static int _pooled;

    private static readonly ContextCallback RunInContext = static state => ((PooledValueTaskBox<TResult, TStateMachine>)state!).StateMachine.MoveNext();

    /// <summary>The suspended call's state (a field: it runs in place).</summary>
    public TStateMachine StateMachine = default!;

    private PooledValueTaskBox() => MoveNextAction = MoveNext;

    /// <summary>Resumes the call: what its awaiters are given (made once per box).</summary>
    public Action MoveNextAction { get; }

    public static PooledValueTaskBox<TResult, TStateMachine> Rent()
    {
        var own = t_boxes;
        if (own is not null && t_count > 0)
        {
            var index = --t_count;
            var mine = own[index]!;
            own[index] = null;
            return mine;
        }
        lock (PoolLock)
        {
            if (_pooled > 0)
            {
                var box = Pool[--_pooled]!;
                Pool[_pooled] = null;
                return box;
            }
        }
        return new PooledValueTaskBox<TResult, TStateMachine>();
    }

    private protected override void Recycle()
    {
        StateMachine = default!;
        var own = t_boxes ??= new PooledValueTaskBox<TResult, TStateMachine>?[PooledValueTaskBox.ThreadCapacity];
        if (t_count < own.Length)
        {
            own[t_count++] = this;
            return;
        }
        lock (PoolLock)
        {
            if (_pooled < Pool.Length)
                Pool[_pooled++] = this;
        }
    }

    /// <remarks>
    /// Touches nothing of the box after the state machine's step: its last step completes the call,
    /// and the awaiting caller, resumed inline, may take the result and so recycle this box (and
    /// another call rent it) before that step returns.
    /// </remarks>
    private void MoveNext()
    {
        if (Context is { } context)
            ExecutionContext.Run(context, RunInContext, this);
        else
            StateMachine.MoveNext();
    }
}
