using System.Buffers;
using System.IO.Pipelines;

namespace MProxy.Edge.Networking;

/// <summary>Relaying bytes between pipes, shared by the protocol adapters.</summary>
internal static class PipeWriterExtensions
{
    /// <summary>Copies every segment of <paramref name="bytes"/> into <paramref name="output"/> (no flush).</summary>
    public static void WriteSequence(this PipeWriter output, in ReadOnlySequence<byte> bytes)
    {
        foreach (var segment in bytes)
            output.Write(segment.Span);
    }
}
