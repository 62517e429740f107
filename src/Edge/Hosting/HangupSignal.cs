using System.Globalization;
using System.Runtime.InteropServices;

namespace MProxy.Edge.Hosting;

/// <summary>
/// Makes SIGHUP reach mproxy's reload handler when the process was started with it ignored (under
/// <c>nohup</c>, or by a supervisor that ignores it): the .NET runtime leaves an ignored signal
/// ignored, so a <see cref="PosixSignalRegistration"/> for it would never run. PgBouncer and nginx
/// reload on SIGHUP under nohup too; the process still survives a hangup, since the handler
/// cancels the default action.
/// </summary>
internal static partial class HangupSignal
{
    private const int Sighup = 1;        // the same on every Linux architecture
    private const nint DefaultAction = 0; // SIG_DFL

    /// <summary>
    /// If SIGHUP is ignored, sets it back to its default action and returns true; call it right
    /// before registering the handler (between the two, a hangup would end the process). Linux only;
    /// false elsewhere or when it was not ignored.
    /// </summary>
    public static bool UnignoreIfIgnored()
    {
        if (!OperatingSystem.IsLinux() || !IsIgnored())
            return false;
        Signal(Sighup, DefaultAction);
        return true;
    }

    /// <summary>Whether this process ignores SIGHUP, from the <c>SigIgn</c> mask of /proc/self/status.</summary>
    private static bool IsIgnored()
    {
        try
        {
            return IsIgnoredIn(File.ReadLines("/proc/self/status"));
        }
        catch (IOException)
        {
            return false;
        }
    }

    /// <summary>Whether the <c>SigIgn</c> line of a /proc status file has SIGHUP's bit set.</summary>
    internal static bool IsIgnoredIn(IEnumerable<string> statusLines)
    {
        foreach (var line in statusLines)
        {
            if (!line.StartsWith("SigIgn:", StringComparison.Ordinal))
                continue;
            return ulong.TryParse(line.AsSpan("SigIgn:".Length).Trim(), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var mask)
                && (mask & (1UL << (Sighup - 1))) != 0;
        }
        return false;
    }

    [LibraryImport("libc", EntryPoint = "signal")]
    private static partial nint Signal(int signal, nint handler);
}
