using System.Net;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Logging;
using MProxy.Silo.Hosting;

namespace MProxy.Silo.Tests.Hosting;

public sealed class SiloHostTests
{
    [Fact]
    public async Task Build_WatchesNoConfigurationFile_SoTheWorkingDirectoryIsNotWatched()
    {
        // appsettings.json reloaded on change would put a recursive watch on the working directory.
        var options = new SiloOptions { Listen = new IPEndPoint(IPAddress.Loopback, 0), Store = SiloOptions.MemoryStore };
        await using var app = SiloHost.Build(options, LogLevel.Warning);

        var providers = ((IConfigurationRoot)app.Configuration).Providers;
        Assert.DoesNotContain(providers, p => p is FileConfigurationProvider { Source.ReloadOnChange: true });
    }
}
