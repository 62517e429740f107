namespace MProxy.Abstractions.ResourceUnits;

/// <summary>
/// The weights that turn what a statement did on one backend into resource units (RU):
/// <code>
/// RU_read  = ReadBase  + ReadPerByte · bytes_read              + LatencyPerMs · latency_ms
/// RU_write = WriteBase + WritePer4KiB · bytes_written / 4096   + LatencyPerMs · latency_ms
/// </code>
/// (<see cref="RuFormula"/>). Weights are configured per backend so that an operator can make,
/// say, a replica's reads cheaper than the primary's or penalise write amplification.
/// </summary>
/// <remarks>
/// <para>
/// <b>Defaults.</b> <see cref="ReadPerByte"/> = 1/4096 (1 RU per 4 KiB returned),
/// <see cref="WritePer4KiB"/> = 2 (a 4 KiB write costs twice a 4 KiB read: WAL, indexes,
/// replication), <see cref="LatencyPerMs"/> = 0.5. With them a 1 ms point select returning
/// ~150 bytes costs 1 + 0.04 + 0.5 ≈ 1.5 RU; an 8 KiB row read in 2 ms costs 1 + 2 + 1 = 4 RU; a
/// 1 ms single-row insert of 200 bytes costs 6 + 0.1 + 0.5 ≈ 6.6 RU; a 1 s report returning 1 MiB
/// costs 1 + 256 + 500 ≈ 757 RU. Latency dominates for slow statements on purpose: it is the
/// proxy's indirect measure of server CPU and I/O (the seed's and TiDB's argument), and it makes an
/// overloaded backend — where everything slows down — drain budgets faster, which is the
/// backpressure that stops retry storms.
/// </para>
/// <para>
/// <b>Calibrating.</b> Run a load test per backend class with a representative mix (point reads,
/// range scans, inserts, updates, one or two reports) at several rates below saturation. Per
/// interval record the proxy's per-statement inputs (count by kind, bytes read, bytes written,
/// latency ms summed) and the server's consumption (CPU seconds from <c>pg_stat_statements</c> /
/// <c>performance_schema</c> or the host, plus I/O bytes). Fix the bases at 1 and 6 and fit
/// <c>server_cost ≈ k·(count_read + 6·count_write) + a·bytes_read + b·bytes_written/4096 + c·latency_ms</c>
/// by least squares (non-negative), where <c>server_cost</c> is CPU seconds plus I/O normalised to
/// CPU-equivalent seconds. Then <c>ReadPerByte = a/k</c>, <c>WritePer4KiB = b/k</c>,
/// <c>LatencyPerMs = c/k</c>, so that one RU is "what a point read costs the server". Check the fit
/// on a held-out mix (residual under ~20%), and re-run it when hardware, server version or schema
/// change materially. Budgets (RU/s) are then sized from the backend's saturation point in RU/s.
/// </para>
/// </remarks>
public sealed record RuWeights
{
    public const double DefaultReadBase = 1;
    public const double DefaultWriteBase = 6;
    public const double DefaultReadPerByte = 1.0 / 4096;
    public const double DefaultWritePer4KiB = 2;
    public const double DefaultLatencyPerMs = 0.5;

    /// <summary>The weights above; what a backend without its own weights uses.</summary>
    public static RuWeights Default { get; } = new();

    /// <summary>RU every read pays, whatever it did (1).</summary>
    public double ReadBase { get; init; } = DefaultReadBase;

    /// <summary>RU every write pays, whatever it did (6).</summary>
    public double WriteBase { get; init; } = DefaultWriteBase;

    /// <summary>RU per byte the server sent back.</summary>
    public double ReadPerByte { get; init; } = DefaultReadPerByte;

    /// <summary>RU per 4096 bytes sent to the server.</summary>
    public double WritePer4KiB { get; init; } = DefaultWritePer4KiB;

    /// <summary>RU per millisecond the statement ran on the server.</summary>
    public double LatencyPerMs { get; init; } = DefaultLatencyPerMs;

    /// <summary>The base cost of a statement of <paramref name="kind"/>.</summary>
    public double BaseOf(RuKind kind) => kind == RuKind.Write ? WriteBase : ReadBase;

    /// <summary>The name of the first weight that is negative, NaN or infinite, or null when all are usable.</summary>
    public string? FirstInvalid()
    {
        if (!IsUsable(ReadBase))
            return nameof(ReadBase);
        if (!IsUsable(WriteBase))
            return nameof(WriteBase);
        if (!IsUsable(ReadPerByte))
            return nameof(ReadPerByte);
        if (!IsUsable(WritePer4KiB))
            return nameof(WritePer4KiB);
        if (!IsUsable(LatencyPerMs))
            return nameof(LatencyPerMs);
        return null;
    }

    private static bool IsUsable(double weight) => double.IsFinite(weight) && weight >= 0;
}
