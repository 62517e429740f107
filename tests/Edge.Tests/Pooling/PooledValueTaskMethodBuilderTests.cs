using System.Runtime.CompilerServices;
using System.Threading.Tasks.Sources;
using MProxy.Edge.Pooling;

namespace MProxy.Edge.Tests.Pooling;

public sealed class PooledValueTaskMethodBuilderTests
{
    private static readonly AsyncLocal<int> Ambient = new();

    [Fact]
    public async Task CallThatNeverSuspends_ReturnsItsResultOrException()
    {
        Assert.Equal(42, await AddAfterAsync(null, 42));
        var e = await Assert.ThrowsAsync<InvalidOperationException>(async () => await AddAfterAsync(null, -1));
        Assert.Equal("negative", e.Message);
        await DoneAfterAsync(null);
    }

    [Fact]
    public void SuspendedCalls_EachCompletesWithItsOwnResult_InWhateverOrderTheyResume()
    {
        const int calls = 100;
        var gates = Enumerable.Range(0, calls).Select(_ => new Gate()).ToArray();
        var pending = new ValueTask<int>[calls];
        for (var i = 0; i < calls; i++)
            pending[i] = AddAfterAsync(gates[i], i);
        Assert.All(pending, p => Assert.False(p.IsCompleted));
        for (var i = calls - 1; i >= 0; i -= 2)
            gates[i].Open(1000);
        for (var i = calls - 2; i >= 0; i -= 2)
            gates[i].Open(2000);
        for (var i = 0; i < calls; i++)
            Assert.Equal(i + (i % 2 == 1 ? 1000 : 2000), Take(pending[i]));
    }

    [Fact]
    public async Task SuspendedCall_ThatThrows_HandsTheExceptionToItsAwaiter()
    {
        var gate = new Gate();
        var pending = AddAfterAsync(gate, 1);
        gate.Fail(new TimeoutException("the gate failed"));
        var e = await Assert.ThrowsAsync<TimeoutException>(async () => await pending);
        Assert.Equal("the gate failed", e.Message);

        var voidGate = new Gate();
        var voidPending = DoneAfterAsync(voidGate);
        Assert.False(voidPending.IsCompleted);
        voidGate.Fail(new IOException("gone"));
        await Assert.ThrowsAsync<IOException>(async () => await voidPending);
    }

    [Fact]
    public void ResultTakenTwice_IsRefused_NotAnotherCallsResult()
    {
        var gate = new Gate();
        var pending = AddAfterAsync(gate, 5);
        gate.Open(1);
        Assert.Equal(6, Take(pending));

        // The box went back to the pool: a second call may be using it now; the stale ValueTask must not read its result.
        var next = new Gate();
        var second = AddAfterAsync(next, 100);
        next.Open(1);
        Assert.Throws<InvalidOperationException>(() => Take(pending));
        Assert.Equal(101, Take(second));
    }

    [Fact]
    public void ManyCallsSuspendedAtOnce_ReuseTheirBoxes_RoundAfterRound()
    {
        // What the builder is for: a full pool with hundreds of clients waiting at once. The runtime's
        // pooling builder keeps one box per core and per thread, so every round would allocate most
        // of its boxes again; here only the first round does.
        const int calls = 300;
        var gates = Enumerable.Range(0, calls).Select(_ => new Gate()).ToArray();
        var pending = new ValueTask<int>[calls];
        var voidPending = new ValueTask[calls];
        long Round()
        {
            var before = GC.GetAllocatedBytesForCurrentThread();
            for (var i = 0; i < calls; i++)
                pending[i] = AddAfterAsync(gates[i], i);
            for (var i = 0; i < calls; i++)
                gates[i].Open(1);
            for (var i = 0; i < calls; i++)
                voidPending[i] = DoneAfterAsync(gates[i]);
            for (var i = 0; i < calls; i++)
                gates[i].Open(0);
            var sum = 0;
            for (var i = 0; i < calls; i++)
            {
                sum += Take(pending[i]);
                voidPending[i].GetAwaiter().GetResult();
            }
            var allocated = GC.GetAllocatedBytesForCurrentThread() - before;
            Assert.Equal(calls * (calls - 1) / 2 + calls, sum);
            return allocated;
        }

        var first = Round();
        var least = long.MaxValue;
        for (var round = 0; round < 5; round++)
            least = Math.Min(least, Round()); // the least of five: tiered compilation may allocate on this thread in one
        Assert.True(first > calls * 2 * IntPtr.Size, $"the first round made its boxes ({first} bytes)");
        Assert.True(least < 1024, $"a later round allocated {least} bytes for {2 * calls} suspended calls (first round: {first})");
    }

    [Fact]
    public void BoxesRecycledOnAnotherThread_ComeBackThroughTheSharedPool()
    {
        // A client may wait on one event loop and resume on the other: its boxes are then recycled
        // there. Beyond the few each thread keeps, they go to the shared pool, and the thread that
        // suspends calls rents them back from it instead of allocating new ones every round.
        const int calls = 300;
        const int rounds = 7;
        var gates = Enumerable.Range(0, calls).Select(_ => new Gate()).ToArray();
        var pending = new ValueTask<int>[calls];
        var sums = new List<int>();
        using var suspended = new SemaphoreSlim(0);
        using var resumed = new SemaphoreSlim(0);
        var other = new Thread(() => // the other loop: one long-lived thread, as the loops are
        {
            for (var round = 0; round < rounds; round++)
            {
                suspended.Wait();
                var sum = 0;
                for (var i = 0; i < calls; i++)
                {
                    gates[i].Open(1);
                    sum += Take(pending[i]); // the box goes back to a pool on this thread
                }
                sums.Add(sum);
                resumed.Release();
            }
        });
        other.Start();
        long Round()
        {
            var before = GC.GetAllocatedBytesForCurrentThread();
            for (var i = 0; i < calls; i++)
                pending[i] = AddAfterOnAnotherThreadAsync(gates[i], i); // a method of its own: its pool starts empty
            var allocated = GC.GetAllocatedBytesForCurrentThread() - before;
            suspended.Release();
            resumed.Wait();
            return allocated;
        }

        var first = Round();
        Round(); // the other thread's own boxes fill first; from then on all it recycles is shared
        var least = long.MaxValue;
        for (var round = 2; round < rounds; round++)
            least = Math.Min(least, Round());
        other.Join();
        Assert.Equal(rounds, sums.Count);
        Assert.All(sums, sum => Assert.Equal(calls * (calls - 1) / 2 + calls, sum));
        Assert.True(first > calls * IntPtr.Size, $"the first round made its boxes ({first} bytes)");
        Assert.True(least < 1024, $"a later round allocated {least} bytes for {calls} suspended calls (first round: {first})");
    }

    [Fact]
    public async Task SuspendedCall_ResumesInTheExecutionContextItSuspendedIn()
    {
        var gate = new Gate();
        Ambient.Value = 7;
        var pending = AmbientAfterAsync(gate);
        Ambient.Value = 0;
        // Completed from another thread whose context holds something else.
        await Task.Run(() =>
        {
            Ambient.Value = 99;
            gate.Open(0);
        });
        Assert.Equal(7, await pending);
        Assert.Equal(0, Ambient.Value);
    }

    [Fact]
    public async Task SuspendedWithFlowSuppressed_ResumesInTheCompletersContext()
    {
        var gate = new Gate();
        Ambient.Value = 7;
        ValueTask<int> pending;
        using (ExecutionContext.SuppressFlow())
            pending = AmbientAfterAsync(gate);
        await Task.Run(() =>
        {
            Ambient.Value = 99;
            gate.Open(0);
        });
        Assert.Equal(99, await pending);
    }

    /// <summary>The result of a call the test has already let complete (its gate is open): never blocks.</summary>
    private static int Take(ValueTask<int> completed)
    {
        Assert.True(completed.IsCompleted);
        return completed.Result;
    }

    [AsyncMethodBuilder(typeof(PooledValueTaskMethodBuilder<>))]
    private static async ValueTask<int> AddAfterAsync(Gate? gate, int x)
    {
        if (x < 0)
            throw new InvalidOperationException("negative");
        var y = gate is null ? 0 : await gate.WaitAsync();
        return x + y;
    }

    [AsyncMethodBuilder(typeof(PooledValueTaskMethodBuilder<>))]
    private static async ValueTask<int> AddAfterOnAnotherThreadAsync(Gate gate, int x) => x + await gate.WaitAsync();

    [AsyncMethodBuilder(typeof(PooledValueTaskMethodBuilder))]
    private static async ValueTask DoneAfterAsync(Gate? gate)
    {
        if (gate is not null)
            await gate.WaitAsync();
    }

    [AsyncMethodBuilder(typeof(PooledValueTaskMethodBuilder<>))]
    private static async ValueTask<int> AmbientAfterAsync(Gate gate)
    {
        await gate.WaitAsync();
        return Ambient.Value;
    }

    /// <summary>A reusable awaitable the test opens by hand: its waiter resumes inline on the opening thread.</summary>
    private sealed class Gate : IValueTaskSource<int>
    {
        private ManualResetValueTaskSourceCore<int> _core;

        public ValueTask<int> WaitAsync() => new(this, _core.Version);

        public void Open(int value) => _core.SetResult(value);

        public void Fail(Exception e) => _core.SetException(e);

        public int GetResult(short token)
        {
            try
            {
                return _core.GetResult(token);
            }
            finally
            {
                _core.Reset();
            }
        }

        public ValueTaskSourceStatus GetStatus(short token) => _core.GetStatus(token);

        public void OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
            _core.OnCompleted(continuation, state, token, flags);
    }
}
