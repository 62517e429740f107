using System.Runtime.InteropServices;

namespace MProxy.Edge.Networking.Epoll;

/// <summary>The Linux system calls the epoll transport makes (x86-64 and arm64 layouts).</summary>
internal static unsafe partial class EpollNative
{
    public const int EpollCtlAdd = 1;
    public const int EpollCtlDel = 2;
    public const uint EpollIn = 0x001;
    public const uint EpollOut = 0x004;
    public const uint EpollErr = 0x008;
    public const uint EpollHup = 0x010;
    public const uint EpollRdHup = 0x2000;
    public const uint EpollEt = 0x80000000;
    public const int EfdNonBlock = 0x800;
    public const int MsgNoSignal = 0x4000;
    public const int Eintr = 4;
    public const int Eagain = 11;

    /// <summary>struct epoll_event: packed on x86-64 (12 bytes), naturally aligned elsewhere (16).</summary>
    [StructLayout(LayoutKind.Sequential, Pack = 1)]
    public struct EpollEventPacked
    {
        public uint Events;
        public ulong Data;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct EpollEventAligned
    {
        public uint Events;
        public ulong Data;
    }

    public static readonly bool Packed = RuntimeInformation.ProcessArchitecture == Architecture.X64;

    public static int EventSize => Packed ? sizeof(EpollEventPacked) : sizeof(EpollEventAligned);

    public static bool IsSupported => OperatingSystem.IsLinux() && RuntimeInformation.ProcessArchitecture is Architecture.X64 or Architecture.Arm64;

    [LibraryImport("libc", SetLastError = true)]
    public static partial int epoll_create1(int flags);

    [LibraryImport("libc", SetLastError = true)]
    public static partial int epoll_ctl(int epfd, int op, int fd, void* ev);

    [LibraryImport("libc", SetLastError = true)]
    public static partial int epoll_wait(int epfd, void* events, int maxEvents, int timeout);

    [LibraryImport("libc", SetLastError = true)]
    public static partial int eventfd(uint initval, int flags);

    [LibraryImport("libc", SetLastError = true)]
    public static partial nint recv(int fd, byte* buffer, nint length, int flags);

    [LibraryImport("libc", SetLastError = true)]
    public static partial nint send(int fd, byte* buffer, nint length, int flags);

    [LibraryImport("libc", SetLastError = true)]
    public static partial nint write(int fd, void* buffer, nint length);

    [LibraryImport("libc", SetLastError = true)]
    public static partial nint read(int fd, void* buffer, nint length);

    [LibraryImport("libc", SetLastError = true)]
    public static partial int close(int fd);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int getrusage(int who, void* usage);

    /// <summary>The calling thread's voluntary context switches so far (<c>ru_nvcsw</c> of <c>getrusage(RUSAGE_THREAD)</c>; 64-bit layout).</summary>
    public static long ThreadVoluntarySwitches()
    {
        const int RusageThread = 1, Size = 144, NvcswOffset = 128;
        var usage = stackalloc byte[Size];
        return getrusage(RusageThread, usage) == 0 ? *(long*)(usage + NvcswOffset) : 0;
    }

    /// <summary>Writes one epoll_event at <paramref name="slot"/> in the layout of this platform.</summary>
    public static void SetEvent(void* slot, uint events, ulong data)
    {
        if (Packed)
            *(EpollEventPacked*)slot = new EpollEventPacked { Events = events, Data = data };
        else
            *(EpollEventAligned*)slot = new EpollEventAligned { Events = events, Data = data };
    }

    /// <summary>Reads the <paramref name="index"/>th epoll_event of an array returned by epoll_wait.</summary>
    public static (uint Events, ulong Data) GetEvent(byte* events, int index)
    {
        if (Packed)
        {
            var e = ((EpollEventPacked*)events)[index];
            return (e.Events, e.Data);
        }
        var a = ((EpollEventAligned*)events)[index];
        return (a.Events, a.Data);
    }
}
