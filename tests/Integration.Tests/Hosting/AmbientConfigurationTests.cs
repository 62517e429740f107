using System.Diagnostics;
using System.Net.Sockets;
using System.Text;
using MProxy.Integration.Tests.Policy;
using MProxy.TestSupport;

namespace MProxy.Integration.Tests.Hosting;

/// <summary>
/// The edge and the silo as their own processes, started in a working directory that holds somebody
/// else's <c>appsettings.json</c> and with ASP.NET-style variables in their environment: none of it
/// applies (a Kestrel endpoint there would be a listener nobody configured).
/// </summary>
public sealed class AmbientConfigurationTests : IDisposable
{
    private readonly DirectoryInfo _directory = Directory.CreateTempSubdirectory("mproxy-ambient-");
    private readonly int _fromFile = FreePort.Next();
    private readonly int _fromEnvironment = FreePort.Next();

    public AmbientConfigurationTests() =>
        File.WriteAllText(Path.Combine(_directory.FullName, "appsettings.json"), $$"""
            {
              "Kestrel": { "Endpoints": { "Ambient": { "Url": "http://127.0.0.1:{{_fromFile}}" } } },
              "Logging": { "LogLevel": { "Default": "None" } }
            }
            """);

    private Dictionary<string, string> AmbientEnvironment => new()
    {
        ["Kestrel__Endpoints__FromEnvironment__Url"] = $"http://127.0.0.1:{_fromEnvironment}",
    };

    public void Dispose() => _directory.Delete(recursive: true);

    [Fact]
    public async Task Edge_IgnoresAppsettingsJsonAndEnvironmentVariables()
    {
        var listen = FreePort.Next();
        var info = new ProcessStartInfo("dotnet")
        {
            WorkingDirectory = _directory.FullName,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var (name, value) in AmbientEnvironment)
            info.Environment[name] = value;
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
            await AssertNoAmbientListenerAsync("edge");
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
        }
    }

    [Fact]
    public async Task Silo_IgnoresAppsettingsJsonAndEnvironmentVariables()
    {
        var policyFile = Path.Combine(_directory.FullName, "policy.yaml");
        await File.WriteAllTextAsync(policyFile, "backends: []\n", TestContext.Current.CancellationToken);
        await using var silo = await SiloProcess.StartAsync(FreePort.Next(), FreePort.Next(), "memory", policyFile, TestContext.Current.CancellationToken,
            _directory.FullName, AmbientEnvironment);
        await AssertNoAmbientListenerAsync("silo");
    }

    private async Task AssertNoAmbientListenerAsync(string who)
    {
        Assert.False(await AcceptsAsync(_fromFile), $"the {who} listens where the working directory's appsettings.json says");
        Assert.False(await AcceptsAsync(_fromEnvironment), $"the {who} listens where an environment variable says");
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
