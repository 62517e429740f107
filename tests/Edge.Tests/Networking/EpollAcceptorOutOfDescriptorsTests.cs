using System.Buffers;
using System.Collections.Concurrent;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using Microsoft.Win32.SafeHandles;
using MProxy.Edge.Networking.Epoll;

namespace MProxy.Edge.Tests.Networking;

/// <summary>
/// The epoll acceptor out of descriptors: <c>accept</c> fails with EMFILE, the client stays in the
/// kernel's backlog, and — the set being edge-triggered, it would not be reported again until another
/// client came — accepting pauses (logged) and is tried again by itself. The test takes the process
/// to its descriptor limit, so it runs alone.
/// </summary>
[Collection(RunsAlone.Name)]
public sealed class EpollAcceptorOutOfDescriptorsTests
{
    private static CancellationToken Token => TestContext.Current.CancellationToken;

    [Fact]
    public async Task OutOfDescriptors_AcceptingPauses_AndTheWaitingClientIsAcceptedOnceSomeAreFree()
    {
        using var transport = new EpollTransport(loops: 1);
        var listening = LoopbackListener.Start(backlog: 16); // the acceptor owns it
        var accepted = new TaskCompletionSource<EpollConnection>(TaskCreationOptions.RunContinuationsAsynchronously);
        var log = new WarningLog();
        using var acceptor = transport.Listen(listening, connection => accepted.TrySetResult(connection), log);
        using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp); // its descriptor, before there are none
        // What would otherwise start while there are none: the first connect loads code (an assembly
        // is a file to open), the first delay starts the timer thread (a thread needs descriptors too).
        ConnectOnceElsewhere();
        await Task.Delay(1, Token);

        Assert.Equal(0, GetRLimit(RLimitNoFile, out var limit));
        var fillers = new List<SafeFileHandle>();
        try
        {
            // A limit a little above what is open, then every descriptor below it taken.
            var open = Directory.GetFileSystemEntries("/proc/self/fd").Length;
            var lowered = limit with { Current = (ulong)open + 32 };
            Assert.Equal(0, SetRLimit(RLimitNoFile, lowered));
            while (true)
            {
                try
                {
                    fillers.Add(File.OpenHandle("/dev/null"));
                }
                catch (IOException)
                {
                    break; // EMFILE: none left
                }
            }
            client.Connect(acceptor.EndPoint); // the handshake completes in the kernel: no new descriptor here

            // Waited for here without anything that might load code (and so open a file) meanwhile.
            var deadline = Environment.TickCount64 + 10_000;
            while (!log.HasWarned("paused for 100 ms") && Environment.TickCount64 < deadline)
                await Task.Delay(10, Token);
            Assert.True(log.HasWarned("paused for 100 ms"), "accepting paused");
            Assert.False(accepted.Task.IsCompleted);
        }
        finally
        {
            foreach (var filler in fillers)
                filler.Dispose();
            SetRLimit(RLimitNoFile, limit);
        }

        // No other client comes: the pause's own retry accepts the one that waited.
        var connection = await accepted.Task.WaitAsync(TimeSpan.FromSeconds(10), Token);
        await client.SendAsync("waited"u8.ToArray(), SocketFlags.None, Token);
        var read = await connection.Transport.Input.ReadAsync(Token).AsTask().WaitAsync(TimeSpan.FromSeconds(10), Token);
        Assert.Equal("waited", System.Text.Encoding.ASCII.GetString(read.Buffer.ToArray()));
        connection.Transport.Input.AdvanceTo(read.Buffer.End);
        await connection.DisposeAsync();
    }

    private static void ConnectOnceElsewhere()
    {
        using var elsewhere = LoopbackListener.Start();
        using var once = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        once.Connect(elsewhere.LocalEndPoint!);
    }

    private const int RLimitNoFile = 7; // RLIMIT_NOFILE on x86-64 and arm64 Linux

    [StructLayout(LayoutKind.Sequential)]
    private record struct RLimit(ulong Current, ulong Maximum);

    [DllImport("libc", EntryPoint = "getrlimit")]
    private static extern int GetRLimit(int resource, out RLimit limit);

    [DllImport("libc", EntryPoint = "setrlimit")]
    private static extern int SetRLimit(int resource, in RLimit limit);

    /// <summary>The warnings an acceptor logs, rendered.</summary>
    private sealed class WarningLog : ILogger
    {
        private readonly ConcurrentQueue<string> _warnings = new();

        public bool HasWarned(string text)
        {
            foreach (var warning in _warnings)
            {
                if (warning.Contains(text, StringComparison.Ordinal))
                    return true;
            }
            return false;
        }

        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Warning;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (IsEnabled(logLevel))
                _warnings.Enqueue(formatter(state, exception));
        }
    }
}
