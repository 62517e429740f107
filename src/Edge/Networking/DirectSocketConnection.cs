using System.Buffers;
using System.IO.Pipelines;
using System.Net.Sockets;

namespace MProxy.Edge.Networking;

/// <summary>
/// A TCP connection whose pipes read from and write to the socket directly, on the caller's thread:
/// a read is one <c>recv</c> into the reader's buffer, a flush one <c>send</c> of what was written.
/// </summary>
/// <remarks>
/// Kestrel's socket transport puts a <see cref="Pipe"/> and a loop between the socket and the
/// application in each direction (receive loop → pipe → reader; writer → pipe → send loop). Each
/// connection of the edge has one reader (a server connection's pump, a client's loop) and one
/// writer at a time (a server connection: the attached client's loop or the edge while idle; a
/// client: the attached server's pump, or the client's loop while none is attached, see
/// <c>RelayClientSession</c>), so those hand-offs buy nothing here. This is the BCL's stream pipes over
/// a <see cref="NetworkStream"/>: <see cref="PipeReader.CancelPendingRead"/> cancels the pending
/// receive (no data is lost: a cancelled receive has read nothing), and a flush completes when the
/// kernel has the bytes.
/// </remarks>
internal sealed class DirectSocketConnection : SocketConnection
{
    private const int MinimumReadSize = 4096;
    private const int MinimumWriteSize = 4096;

    private readonly NetworkStream _stream;

    public DirectSocketConnection(Socket socket)
        : base(socket)
    {
        _stream = new NetworkStream(socket, ownsSocket: true);
        Input = PipeReader.Create(_stream, new StreamPipeReaderOptions(MemoryPool<byte>.Shared, bufferSize: 16 * 1024, minimumReadSize: MinimumReadSize, leaveOpen: true));
        Output = PipeWriter.Create(_stream, new StreamPipeWriterOptions(MemoryPool<byte>.Shared, minimumBufferSize: MinimumWriteSize, leaveOpen: true));
    }

    public override PipeReader Input { get; }

    public override PipeWriter Output { get; }

    /// <remarks>
    /// The pipes are not completed here: the pump may be inside a read, and completing a reader
    /// under it would return its buffer to the pool mid-receive. Closing the socket ends that read
    /// with an error; the buffers are left to the collector — unless the pipes' user completed them
    /// first, as a client session does when it ends (<see cref="Protocols.RelayClientSession"/>).
    /// </remarks>
    protected override ValueTask CloseAsync() => _stream.DisposeAsync();
}
