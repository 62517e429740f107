using System.Buffers;
using System.IO.Pipelines;
using System.Runtime.InteropServices;
using System.Threading.Tasks.Sources;

namespace MProxy.Edge.Networking.Epoll;

/// <summary>
/// The reading half of an <see cref="EpollConnection"/>: one contiguous buffer (grown for a message
/// larger than it, compacted in place otherwise), filled by <c>recv</c> on the caller's thread when
/// the socket may have data, else by the loop's thread when the next edge arrives — which then runs
/// the reader's continuation.
/// </summary>
internal sealed class EpollPipeReader(EpollConnection connection) : PipeReader, IValueTaskSource<ReadResult>
{
    private const int InitialSize = 16 * 1024;
    private const int MinimumFree = 4096;

    private readonly Lock _gate = new();
    private byte[] _buffer = ArrayPool<byte>.Shared.Rent(InitialSize);
    private int _start;                 // first unconsumed byte
    private int _end;                   // end of the received bytes
    private bool _examinedAll;          // the reader looked at everything: the next read needs new bytes
    private bool _mayHaveData = true;   // no recv since the last edge drained the socket
    private bool _hangup;               // the peer shut down (or the socket failed): no edge will follow, recv until the end
    private bool _eof;
    private Exception? _error;
    private bool _cancelRequested;
    private bool _completed;
    private bool _waiting;
    private CancellationTokenRegistration _registration;
    private ManualResetValueTaskSourceCore<ReadResult> _core;   // continuations run on the completing thread

    public override bool TryRead(out ReadResult result)
    {
        lock (_gate)
        {
            ThrowIfCompleted();
            if (TryTakeLocked(out result))
                return true;
            if (_mayHaveData && ReceiveLocked() && TryTakeLocked(out result))
                return true;
        }
        result = default;
        return false;
    }

    public override ValueTask<ReadResult> ReadAsync(CancellationToken cancellationToken = default)
    {
        lock (_gate)
        {
            ThrowIfCompleted();
            if (_waiting)
                throw new InvalidOperationException("a read is already pending");
            if (TryTakeLocked(out var ready))
                return new ValueTask<ReadResult>(ready);
            if (_mayHaveData && ReceiveLocked() && TryTakeLocked(out ready))
                return new ValueTask<ReadResult>(ready);
            cancellationToken.ThrowIfCancellationRequested();
            _core.Reset();
            _waiting = true;
            // Under the gate: an edge cannot complete this read before its registration is in place.
            // A token cancelled meanwhile runs the callback here (the gate is re-entrant).
            _registration = cancellationToken.CanBeCanceled
                ? cancellationToken.UnsafeRegister(static (state, token) => ((EpollPipeReader)state!).OnCanceled(token), this)
                : default;
            return new ValueTask<ReadResult>(this, _core.Version);
        }
    }

    /// <summary>What a read can answer now without the kernel: unexamined bytes, a cancellation, the end, an error.</summary>
    private bool TryTakeLocked(out ReadResult result)
    {
        if (_cancelRequested)
        {
            _cancelRequested = false;
            result = new ReadResult(Buffered(), isCanceled: true, isCompleted: false);
            return true;
        }
        if (_error is { } error)
            throw new IOException(error.Message, error);
        if ((_end > _start && !_examinedAll) || _eof)
        {
            result = new ReadResult(Buffered(), isCanceled: false, isCompleted: _eof);
            return true;
        }
        result = default;
        return false;
    }

    private ReadOnlySequence<byte> Buffered() => new(_buffer, _start, _end - _start);

    /// <summary>One <c>recv</c> into the free space; false when the socket had nothing (EAGAIN).</summary>
    private unsafe bool ReceiveLocked()
    {
        if (_start == _end)
            _start = _end = 0;
        if (_buffer.Length - _end < MinimumFree)
        {
            var length = _end - _start;
            if (_start > 0 && _buffer.Length - length >= MinimumFree)
            {
                Buffer.BlockCopy(_buffer, _start, _buffer, 0, length);
            }
            else
            {
                var bigger = ArrayPool<byte>.Shared.Rent(Math.Max(_buffer.Length * 2, length + MinimumFree));
                Buffer.BlockCopy(_buffer, _start, bigger, 0, length);
                ArrayPool<byte>.Shared.Return(_buffer);
                _buffer = bigger;
            }
            _start = 0;
            _end = length;
        }
        var room = _buffer.Length - _end;
        nint received;
        fixed (byte* data = &_buffer[_end])
            received = EpollNative.recv(connection.Fd, data, room, 0);
        if (received > 0)
        {
            _end += (int)received;
            _examinedAll = false;
            // Fewer bytes than room: the socket is drained until the next edge — unless the peer has
            // shut down: its FIN may have come with this data in one edge, and no edge follows it.
            _mayHaveData = received == room || _hangup;
            return true;
        }
        if (received == 0)
        {
            _eof = true;
            return true;
        }
        var errno = Marshal.GetLastPInvokeError();
        if (errno == EpollNative.Eagain)
        {
            _mayHaveData = false;
            return false;
        }
        if (errno == EpollNative.Eintr)
            return ReceiveLocked();
        _error = new IOException($"recv failed: errno {errno}");
        return true;
    }

    /// <summary>
    /// The loop saw an edge (<paramref name="hangup"/>: the peer shut down its side, or the socket
    /// failed): wake the waiting read if there is now something to answer.
    /// </summary>
    internal void OnReadable(bool hangup)
    {
        ReadResult result = default;
        Exception? failure = null;
        CancellationTokenRegistration registration;
        lock (_gate)
        {
            _mayHaveData = true;
            _hangup |= hangup;
            if (!_waiting || _completed)
                return;
            try
            {
                if (!ReceiveLocked() || !TryTakeLocked(out result))
                    return;
            }
            catch (IOException e)
            {
                failure = e;
            }
            _waiting = false;
            registration = _registration;
            _registration = default;
        }
        // Outside the gate: disposing waits for a running cancellation callback, which takes the gate.
        registration.Dispose();
        if (failure is not null)
            _core.SetException(failure);
        else
            _core.SetResult(result);
    }

    /// <summary>The connection is being closed on the loop: a waiting read sees the end of the stream.</summary>
    internal void OnClosed()
    {
        CancellationTokenRegistration registration;
        lock (_gate)
        {
            _eof = true;
            if (!_waiting)
                return;
            _waiting = false;
            registration = _registration;
            _registration = default;
        }
        registration.Dispose();
        _core.SetResult(new ReadResult(default, isCanceled: false, isCompleted: true));
    }

    private void OnCanceled(CancellationToken token)
    {
        lock (_gate)
        {
            if (!_waiting)
                return;
            _waiting = false;
        }
        _core.SetException(new OperationCanceledException(token));
    }

    public override void CancelPendingRead()
    {
        CancellationTokenRegistration registration;
        lock (_gate)
        {
            if (!_waiting)
            {
                _cancelRequested = true;
                return;
            }
            _waiting = false;
            registration = _registration;
            _registration = default;
        }
        registration.Dispose();
        _core.SetResult(new ReadResult(Buffered(), isCanceled: true, isCompleted: false));
    }

    public override void AdvanceTo(SequencePosition consumed) => AdvanceTo(consumed, consumed);

    public override void AdvanceTo(SequencePosition consumed, SequencePosition examined)
    {
        lock (_gate)
        {
            var consumedAt = Offset(consumed);
            var examinedAt = Offset(examined);
            if (consumedAt < _start || consumedAt > _end || examinedAt < consumedAt || examinedAt > _end)
                throw new InvalidOperationException("AdvanceTo outside the last read's buffer");
            _start = consumedAt;
            _examinedAll = examinedAt == _end;
        }
    }

    /// <summary>A position in the last result: its array index (a default position is the start of an empty result).</summary>
    private int Offset(SequencePosition position) =>
        position.GetObject() is null ? _start : ReferenceEquals(position.GetObject(), _buffer) ? position.GetInteger() : throw new InvalidOperationException("a position from another buffer");

    public override void Complete(Exception? exception = null)
    {
        lock (_gate)
        {
            if (_completed)
                return;
            _completed = true;
            // The loop reads only for a waiting read, which cannot be pending now: the buffer is free.
            ArrayPool<byte>.Shared.Return(_buffer);
            _buffer = [];
            _start = _end = 0;
        }
    }

    private void ThrowIfCompleted()
    {
        if (_completed)
            throw new InvalidOperationException("the reader is completed");
    }

    public ReadResult GetResult(short token) => _core.GetResult(token);

    public ValueTaskSourceStatus GetStatus(short token) => _core.GetStatus(token);

    public void OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _core.OnCompleted(continuation, state, token, flags);
}
