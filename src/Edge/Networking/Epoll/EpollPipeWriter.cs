using System.Buffers;
using System.IO.Pipelines;
using System.Runtime.InteropServices;
using System.Threading.Tasks.Sources;

namespace MProxy.Edge.Networking.Epoll;

/// <summary>
/// The writing half of an <see cref="EpollConnection"/>: writes go into one contiguous buffer; a
/// flush is one <c>send</c> on the caller's thread, and waits for the loop only when the kernel's
/// send buffer is full (the loop sends the rest when the socket turns writable, then completes the
/// flush — and runs its continuation — on its thread).
/// </summary>
/// <remarks>
/// The loop hears of writability far more often than a flush waits for it (the socket is registered
/// edge-triggered for in and out together, so its edges report "writable" too, and every ACK that
/// frees send-buffer space is an edge), and usually while another loop's thread is flushing into
/// this socket — holding the gate through its <c>send</c>. So an edge only counts itself and takes
/// the gate just when a flush is waiting; a flush that found the kernel full waits only if no edge
/// came since (a Dekker handshake on <c>_writableEdges</c> and <c>_flushing</c>, each side writing
/// its own and then reading the other's behind a full fence).
/// </remarks>
internal sealed class EpollPipeWriter(EpollConnection connection) : PipeWriter, IValueTaskSource<FlushResult>
{
    private const int InitialSize = 4096;
    private const int RetainedSize = 64 * 1024;   // a buffer grown beyond this goes back to the pool after its flush

    private readonly Lock _gate = new();
    private byte[] _buffer = ArrayPool<byte>.Shared.Rent(InitialSize);
    private int _written;        // bytes written, not yet sent
    private int _sent;           // of those, sent by a flush in progress
    private long _writableEdges;      // writability edges seen by the loop (only it increments)
    private long _fullAtEdge = -1;    // the edge count when send last met a full kernel buffer (-1: never)
    private volatile bool _flushing;  // a flush waits for the loop (changed only under the gate)
    private bool _completed;
    private bool _cancelRequested;
    private ManualResetValueTaskSourceCore<FlushResult> _core;

    public override bool CanGetUnflushedBytes => true;

    public override long UnflushedBytes => _written - _sent;

    public override void Advance(int bytes)
    {
        if (bytes < 0 || _written + bytes > _buffer.Length)
            throw new ArgumentOutOfRangeException(nameof(bytes));
        _written += bytes;
    }

    public override Memory<byte> GetMemory(int sizeHint = 0)
    {
        Ensure(sizeHint);
        return _buffer.AsMemory(_written);
    }

    public override Span<byte> GetSpan(int sizeHint = 0)
    {
        Ensure(sizeHint);
        return _buffer.AsSpan(_written);
    }

    private void Ensure(int sizeHint)
    {
        if (_completed)
            throw new InvalidOperationException("the writer is completed");
        var needed = Math.Max(sizeHint, 1);
        if (_buffer.Length - _written >= needed)
            return;
        var bigger = ArrayPool<byte>.Shared.Rent(Math.Max(_buffer.Length * 2, _written + needed));
        Buffer.BlockCopy(_buffer, 0, bigger, 0, _written);
        ArrayPool<byte>.Shared.Return(_buffer);
        _buffer = bigger;
    }

    public override ValueTask<FlushResult> FlushAsync(CancellationToken cancellationToken = default)
    {
        lock (_gate)
        {
            if (_completed)
                throw new InvalidOperationException("the writer is completed");
            if (_cancelRequested)
            {
                _cancelRequested = false;
                return new ValueTask<FlushResult>(new FlushResult(isCanceled: true, isCompleted: false));
            }
            if (SendLocked())
                return new ValueTask<FlushResult>(new FlushResult(isCanceled: false, isCompleted: false));
            _core.Reset();
            _flushing = true;
            // An edge counted before the loop could see _flushing would go unanswered: look again.
            Interlocked.MemoryBarrier();
            if (SendLocked())
            {
                _flushing = false;
                return new ValueTask<FlushResult>(new FlushResult(isCanceled: false, isCompleted: false));
            }
            return new ValueTask<FlushResult>(this, _core.Version);
        }
    }

    /// <summary>Sends what is buffered; true when all of it went (or there was nothing), false when the kernel is full.</summary>
    /// <exception cref="IOException">the connection is broken.</exception>
    private unsafe bool SendLocked()
    {
        while (_sent < _written)
        {
            var edges = Volatile.Read(ref _writableEdges);
            if (edges == _fullAtEdge)
                return false; // full, and no edge since
            nint sent;
            fixed (byte* data = &_buffer[_sent])
                sent = EpollNative.send(connection.Fd, data, _written - _sent, EpollNative.MsgNoSignal);
            if (sent >= 0)
            {
                _sent += (int)sent;
                continue;
            }
            var errno = Marshal.GetLastPInvokeError();
            if (errno == EpollNative.Eintr)
                continue;
            if (errno != EpollNative.Eagain)
                throw new IOException($"send failed: errno {errno}");
            _fullAtEdge = edges; // the next pass waits unless an edge came during this send
        }
        _sent = _written = 0;
        if (_buffer.Length > RetainedSize)
        {
            ArrayPool<byte>.Shared.Return(_buffer);
            _buffer = ArrayPool<byte>.Shared.Rent(InitialSize);
        }
        return true;
    }

    /// <summary>The loop saw the socket writable: a waiting flush sends the rest.</summary>
    internal void OnWritable()
    {
        Interlocked.Increment(ref _writableEdges);
        if (!_flushing)
            return; // the common case: no gate, so no contention with a flush in progress on another thread
        Exception? failure = null;
        lock (_gate)
        {
            if (!_flushing)
                return;
            try
            {
                if (!SendLocked())
                    return;
            }
            catch (IOException e)
            {
                failure = e;
            }
            _flushing = false;
        }
        if (failure is not null)
            _core.SetException(failure);
        else
            _core.SetResult(new FlushResult(isCanceled: false, isCompleted: false));
    }

    /// <summary>The connection is being closed on the loop: a waiting flush fails.</summary>
    internal void OnClosed()
    {
        lock (_gate)
        {
            if (!_flushing)
                return;
            _flushing = false;
        }
        _core.SetException(new IOException("the connection was closed"));
    }

    public override void CancelPendingFlush()
    {
        lock (_gate)
        {
            if (!_flushing)
            {
                _cancelRequested = true;
                return;
            }
            _flushing = false;
        }
        _core.SetResult(new FlushResult(isCanceled: true, isCompleted: false));
    }

    public override void Complete(Exception? exception = null)
    {
        lock (_gate)
        {
            if (_completed || _flushing)
            {
                _completed = true;
                return; // a waiting flush still sends from the buffer; it goes to the collector
            }
            _completed = true;
            ArrayPool<byte>.Shared.Return(_buffer);
            _buffer = [];
            _sent = _written = 0;
        }
    }

    public FlushResult GetResult(short token) => _core.GetResult(token);

    public ValueTaskSourceStatus GetStatus(short token) => _core.GetStatus(token);

    public void OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _core.OnCompleted(continuation, state, token, flags);
}
