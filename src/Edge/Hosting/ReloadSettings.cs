using MProxy.Edge.Configuration;

namespace MProxy.Edge.Hosting;

/// <summary>The <c>reload:</c> section: whether the edge reloads its configuration when the file changes.</summary>
public sealed record ReloadSettings
{
    /// <summary>Watch the <c>--config</c> file and reload when it changes (SIGHUP and the admin console's RELOAD work regardless).</summary>
    public bool WatchFile { get; init; } = true;

    /// <summary>Quiet time after the last change event before reloading (editors write a file in several steps).</summary>
    public TimeSpan Debounce { get; init; } = TimeSpan.FromMilliseconds(500);

    internal static ReloadSettings Validate(RawReload? raw)
    {
        var defaults = new ReloadSettings();
        if (raw is null)
            return defaults;
        if (raw.DebounceMs is < 0 or > 60_000)
            throw new ConfigException("reload.debounceMs", $"{raw.DebounceMs} is outside 0..60000");
        return new ReloadSettings
        {
            WatchFile = raw.WatchFile ?? defaults.WatchFile,
            Debounce = raw.DebounceMs is { } ms ? TimeSpan.FromMilliseconds(ms) : defaults.Debounce,
        };
    }
}

#pragma warning disable CA1812 // instantiated by the YAML deserializer
internal sealed class RawReload
{
    public bool? WatchFile { get; set; }
    public int? DebounceMs { get; set; }
}
