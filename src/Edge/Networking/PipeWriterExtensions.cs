using System.Buffers;
using System.IO.Pipelines;

namespace MProxy.Edge.Networking;

/// <summary>Relaying bytes between pipes, shared by the protocol adapters.</summary>
internal static class PipeWriterExtensions
{
    /// <summary>Copies every segment of <paramref name="bytes"/> into <paramref name="output"/> (no flush).</summary>
    /// <remarks>A relayed message is almost always one segment (the epoll reader keeps one contiguous buffer): written without the sequence's enumerator.</remarks>
    public static void WriteSequence(this PipeWriter output, in ReadOnlySequence<byte> bytes)
    {
        if (bytes.IsSingleSegment)
        {
            output.Write(bytes.FirstSpan);
            return;
        }
        foreach (var segment in bytes)
            output.Write(segment.Span);
    }
}
