using System.Diagnostics;
using System.Text;

namespace MProxy.Integration.Tests.Policy;

/// <summary>
/// The silo as its own operating-system process (<c>mproxy-silo.dll</c> from this test's output,
/// run with <c>dotnet</c>), on fixed ports so that it can be killed and started again where the
/// edges expect it.
/// </summary>
internal sealed class SiloProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _output = new();

    private SiloProcess(Process process, int edgePort, int dashboardPort)
    {
        _process = process;
        EdgePort = edgePort;
        DashboardPort = dashboardPort;
    }

    public int EdgePort { get; }

    public int DashboardPort { get; }

    public Uri EdgeApi => new($"http://127.0.0.1:{EdgePort}/");

    public string Output
    {
        get
        {
            lock (_output)
                return _output.ToString();
        }
    }

    /// <summary>
    /// Starts the silo and waits until <c>/readyz</c> answers (its store is reachable and migrated);
    /// in <paramref name="workingDirectory"/> and with <paramref name="environment"/> added to this
    /// process's when given.
    /// </summary>
    public static async Task<SiloProcess> StartAsync(int edgePort, int dashboardPort, string store, string policyFile, CancellationToken cancellationToken,
        string? workingDirectory = null, IReadOnlyDictionary<string, string>? environment = null)
    {
        var info = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        if (workingDirectory is not null)
            info.WorkingDirectory = workingDirectory;
        if (environment is not null)
            foreach (var (name, value) in environment)
                info.Environment[name] = value;
        foreach (var argument in new[]
        {
            Path.Combine(AppContext.BaseDirectory, "mproxy-silo.dll"),
            "--listen", $"127.0.0.1:{edgePort}", "--dashboard-listen", $"127.0.0.1:{dashboardPort}",
            "--store", store, "--policy", policyFile, "--log-level", "Warning",
        })
            info.ArgumentList.Add(argument);
        var process = Process.Start(info) ?? throw new InvalidOperationException("could not start the silo");
        var silo = new SiloProcess(process, edgePort, dashboardPort);
        process.OutputDataReceived += (_, e) => silo.Append(e.Data);
        process.ErrorDataReceived += (_, e) => silo.Append(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();

        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(2) };
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        while (DateTime.UtcNow < deadline)
        {
            if (process.HasExited)
                throw new InvalidOperationException($"the silo exited with {process.ExitCode}:\n{silo.Output}");
            try
            {
                if (await http.GetStringAsync(new Uri($"http://127.0.0.1:{dashboardPort}/readyz"), cancellationToken) == "ready\n")
                    return silo;
            }
            catch (HttpRequestException)
            {
            }
            catch (TaskCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
            }
            await Task.Delay(100, cancellationToken);
        }
        await silo.DisposeAsync();
        throw new TimeoutException($"the silo did not become ready:\n{silo.Output}");
    }

    /// <summary>Kills the process outright: no goodbye to the edges, as when a machine dies.</summary>
    public async Task KillAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
        }
    }

    public async ValueTask DisposeAsync()
    {
        await KillAsync();
        _process.Dispose();
    }

    private void Append(string? line)
    {
        if (line is null)
            return;
        lock (_output)
            _output.AppendLine(line);
    }
}
