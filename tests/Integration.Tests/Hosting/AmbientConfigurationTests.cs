using System.Diagnostics;
using System.Net.Sockets;
using System.Text;
using MProxy.TestSupport;

namespace MProxy.Integration.Tests.Hosting;

/// <summary>
/// The edge as its own process, started in a working directory that holds somebody else's
/// <c>appsettings.json</c> and with ASP.NET-style variables in its environment: none of it applies.
/// </summary>
public sealed class AmbientConfigurationTests
{
    [Fact]
    public async Task Edge_IgnoresAppsettingsJsonAndEnvironmentVariables()
    {
        var directory = Directory.CreateTempSubdirectory("mproxy-ambient-");
        var listen = FreePort.Next();
        var fromFile = FreePort.Next();
        var fromEnvironment = FreePort.Next();
        await File.WriteAllTextAsync(Path.Combine(directory.FullName, "appsettings.json"), $$"""
            {
              "Kestrel": { "Endpoints": { "Ambient": { "Url": "http://127.0.0.1:{{fromFile}}" } } },
              "Logging": { "LogLevel": { "Default": "None" } }
            }
            """);
        var info = new ProcessStartInfo("dotnet")
        {
            WorkingDirectory = directory.FullName,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        info.Environment["Kestrel__Endpoints__FromEnvironment__Url"] = $"http://127.0.0.1:{fromEnvironment}";
        foreach (var argument in new[]
        {
            Path.Combine(AppContext.BaseDirectory, "mproxy.dll"),
            "--listen", $"127.0.0.1:{listen}", "--primary", "postgres://app:secret@127.0.0.1:1/app", "--log-level", "Information",
        })
            info.ArgumentList.Add(argument);
        var output = new StringBuilder();
        using var process = Process.Start(info)!;
        process.OutputDataReceived += (_, e) => { lock (output) output.AppendLine(e.Data); };
        process.ErrorDataReceived += (_, e) => { lock (output) output.AppendLine(e.Data); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        try
        {
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
            while (!await AcceptsAsync(listen))
            {
                Assert.False(process.HasExited, "the edge exited: " + Snapshot(output));
                Assert.True(DateTime.UtcNow < deadline, "the edge did not listen within 60 s: " + Snapshot(output));
                await Task.Delay(100);
            }
            Assert.False(await AcceptsAsync(fromFile), "the edge listens where the working directory's appsettings.json says");
            Assert.False(await AcceptsAsync(fromEnvironment), "the edge listens where an environment variable says");
            // --log-level Information holds: the start-up lines are there, not silenced by the file's Logging section.
            deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
            while (!Snapshot(output).Contains("info:", StringComparison.Ordinal))
            {
                Assert.True(DateTime.UtcNow < deadline, "no log line at Information level: " + Snapshot(output));
                await Task.Delay(100);
            }
        }
        finally
        {
            process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync();
            directory.Delete(recursive: true);
        }
    }

    private static string Snapshot(StringBuilder output)
    {
        lock (output)
            return output.ToString();
    }

    private static async Task<bool> AcceptsAsync(int port)
    {
        using var client = new TcpClient();
        try
        {
            await client.ConnectAsync("127.0.0.1", port);
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }
}
