using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Running;
using MProxy.Edge.Configuration;
using MProxy.Edge.Networking.Epoll;
using MProxy.Edge.Routing;
using MProxy.Edge.Telemetry;

namespace MProxy.Bench.StatementPath;

/// <summary>
/// The edge's own work per statement, without the network: <c>dotnet run -c Release -- [filter]</c>
/// (BenchmarkDotNet's arguments, e.g. <c>--filter *Telemetry*</c>).
/// </summary>
public static class Program
{
    public static void Main(string[] args) => BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
}

/// <summary>The statements of pgbench's TPC-B-like transaction, as the wire carries them.</summary>
internal static class TpcbStatements
{
    public static readonly byte[][] All =
    [
        "BEGIN;"u8.ToArray(),
        "UPDATE pgbench_accounts SET abalance = abalance + -3021 WHERE aid = 817263;"u8.ToArray(),
        "SELECT abalance FROM pgbench_accounts WHERE aid = 817263;"u8.ToArray(),
        "UPDATE pgbench_tellers SET tbalance = tbalance + -3021 WHERE tid = 37;"u8.ToArray(),
        "UPDATE pgbench_branches SET bbalance = bbalance + -3021 WHERE bid = 4;"u8.ToArray(),
        "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (37, 4, 817263, -3021, CURRENT_TIMESTAMP);"u8.ToArray(),
        "END;"u8.ToArray(),
    ];
}

/// <summary>
/// One request unit's telemetry (Begin → Sent → AddBytes → Complete) with the Prometheus exporter
/// listening, as on an edge that serves <c>/metrics</c>: per unit, the edge records the query
/// latency and the fingerprint latency histograms and bumps the query counters.
/// </summary>
[MemoryDiagnoser]
public class TelemetryBenchmarks : IDisposable
{
    private const int Sessions = 64;
    private EdgeTelemetry _edge = null!;
    private PrometheusExporter? _exporter;
    private UnitTelemetry[] _sessions = null!;
    private StatementInfo[] _infos = null!;
    private readonly HostPort _host = new("127.0.0.1", 5432);
    private int _unit;

    [Params(true, false)]
    public bool Exporter { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _edge = new EdgeTelemetry(new TelemetryConfig(), TimeProvider.System);
        if (Exporter)
            _exporter = new PrometheusExporter(_edge.Meter);
        // Each session holds the database and user it logged in with: distinct string instances of
        // the same values, as parsed from each client's startup message.
        _sessions = new UnitTelemetry[Sessions];
        for (var i = 0; i < Sessions; i++)
            _sessions[i] = _edge.OpenSession("postgresql", new string("bench".AsSpan()), new string("bench".AsSpan()));
        _infos = [.. TpcbStatements.All.Select(sql => StatementClassifier.Classify(sql, SqlDialect.PostgreSql, RoutingRules.Default))];
    }

    /// <summary>The seven units of one TPC-B-like transaction, each from another session.</summary>
    [Benchmark(OperationsPerInvoke = 7)]
    public void Unit()
    {
        for (var i = 0; i < _infos.Length; i++)
        {
            var session = _sessions[_unit & (Sessions - 1)];
            RunUnit(session, ++_unit, _infos[i]);
        }
    }

    /// <summary>
    /// The same on two threads at once (the epoll transport's two loops on this box), each with
    /// its own sessions of one (database, tenant): what sharing the series and counters costs.
    /// </summary>
    [Benchmark(OperationsPerInvoke = 2 * ParallelUnits)]
    public void UnitOnTwoThreads()
    {
        var second = new Thread(() => RunUnits(Sessions / 2));
        second.Start();
        RunUnits(0);
        second.Join();
    }

    private const int ParallelUnits = 200_000;

    private void RunUnits(int firstSession)
    {
        for (var n = 0; n < ParallelUnits; n++)
        {
            var session = _sessions[firstSession + (n & (Sessions / 2 - 1))];
            RunUnit(session, n + 1, _infos[n % _infos.Length]);
        }
    }

    /// <summary>One request unit's telemetry, as a session and its relay record it.</summary>
    private void RunUnit(UnitTelemetry session, int unit, in StatementInfo info)
    {
        session.Begin(unit, info, classified: true);
        session.Sent(primary: true, _host);
        session.AddBytes(120, 80);
        session.Complete(unit, 0);
    }

    public void Dispose()
    {
        _exporter?.Dispose();
        _edge?.Dispose();
        GC.SuppressFinalize(this);
    }
}

/// <summary>What the PostgreSQL session spends per simple Query on the classifier when QoS and routing are off (the prepared-statement check) and on (a full classification).</summary>
[MemoryDiagnoser]
public class ClassifierBenchmarks
{
    [Benchmark(OperationsPerInvoke = 7)]
    public int PreparedCommandCheck()
    {
        var hits = 0;
        foreach (var sql in TpcbStatements.All)
        {
            if (StatementClassifier.MayHavePreparedStatementCommand(sql))
                hits++;
        }
        return hits;
    }

    [Benchmark(OperationsPerInvoke = 7)]
    public ulong Classify()
    {
        ulong sum = 0;
        foreach (var sql in TpcbStatements.All)
            sum += StatementClassifier.Classify(sql, SqlDialect.PostgreSql, RoutingRules.Default).Fingerprint;
        return sum;
    }
}

/// <summary>
/// What the runtime's GC transition adds to one of the epoll transport's system calls: <c>recv</c>
/// on a non-blocking socket with nothing to read (EAGAIN, the least work the kernel can do) as the
/// edge declares it (<c>SetLastError</c>, with the transition) and with <c>[SuppressGCTransition]</c>
/// (errno read right after the call). Measured 2026-12-06, two runs: 279 and 278 against 274 and 272 ns —
/// about 5 ns a call, 0.15 µs per TPC-B-like transaction; the edge keeps the transition.
/// </summary>
public unsafe partial class SyscallBenchmarks : IDisposable
{
    private Socket _a = null!;
    private Socket _b = null!;
    private int _fd;
    private byte* _buffer;

    [GlobalSetup]
    public void Setup()
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen();
        _a = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        _a.Connect(listener.LocalEndPoint!);
        _b = listener.Accept();
        _a.Blocking = false;
        _fd = (int)_a.Handle;
        _buffer = (byte*)NativeMemory.Alloc(64);
    }

    [Benchmark(Baseline = true)]
    public nint RecvAsTheEdgeCallsIt()
    {
        var n = EpollNative.recv(_fd, _buffer, 64, 0);
        return n < 0 ? Marshal.GetLastPInvokeError() : n;
    }

    [Benchmark]
    public nint RecvWithoutTheTransition()
    {
        var n = recv_without_transition(_fd, _buffer, 64, 0);
        return n < 0 ? Marshal.GetLastSystemError() : n;
    }

    [LibraryImport("libc", EntryPoint = "recv")]
    [SuppressGCTransition]
    private static partial nint recv_without_transition(int fd, byte* buffer, nint length, int flags);

    [GlobalCleanup]
    public void Dispose()
    {
        _a?.Dispose();
        _b?.Dispose();
        if (_buffer is not null)
            NativeMemory.Free(_buffer);
        _buffer = null;
        GC.SuppressFinalize(this);
    }
}
