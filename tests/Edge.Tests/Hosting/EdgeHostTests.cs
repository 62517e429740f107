using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Logging;
using MProxy.Edge.Configuration;
using MProxy.Edge.Hosting;

namespace MProxy.Edge.Tests.Hosting;

public sealed class EdgeHostTests
{
    [Fact]
    public async Task Build_WatchesNoConfigurationFile_SoTheWorkingDirectoryIsNotWatched()
    {
        // appsettings.json reloaded on change would put a recursive watch on the working directory.
        var config = ConfigLoader.LoadYaml("listen:\n  postgres: 127.0.0.1:0\nusers:\n  - name: app\n    password: pw\ndatabases:\n  - name: app\n    primary: db.internal\n");
        await using var app = EdgeHost.Build(config, LogLevel.Warning);

        var providers = ((IConfigurationRoot)app.Configuration).Providers;
        Assert.DoesNotContain(providers, p => p is FileConfigurationProvider { Source.ReloadOnChange: true });
    }
}
