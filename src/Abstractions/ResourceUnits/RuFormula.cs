namespace MProxy.Abstractions.ResourceUnits;

/// <summary>
/// The RU formulas. <see cref="Read"/> and <see cref="Write"/> are the seed's two formulas;
/// <see cref="Cost"/> is the general form the edge meters with (the kind picks the base, both byte
/// terms apply), which equals <see cref="Read"/> when nothing was written and <see cref="Write"/>
/// when nothing was read — so an <c>INSERT … RETURNING</c> pays for the rows it returns too.
/// </summary>
public static class RuFormula
{
    /// <summary><c>ReadBase + ReadPerByte·bytesRead + LatencyPerMs·latencyMs</c>.</summary>
    public static double Read(RuWeights weights, long bytesRead, double latencyMs)
    {
        ArgumentNullException.ThrowIfNull(weights);
        return weights.ReadBase + weights.ReadPerByte * bytesRead + weights.LatencyPerMs * latencyMs;
    }

    /// <summary><c>WriteBase + WritePer4KiB·bytesWritten/4096 + LatencyPerMs·latencyMs</c>.</summary>
    public static double Write(RuWeights weights, long bytesWritten, double latencyMs)
    {
        ArgumentNullException.ThrowIfNull(weights);
        return weights.WriteBase + weights.WritePer4KiB * (bytesWritten / 4096.0) + weights.LatencyPerMs * latencyMs;
    }

    /// <summary>The general form: base of <paramref name="kind"/> plus every variable term.</summary>
    public static double Cost(RuWeights weights, RuKind kind, long bytesRead, long bytesWritten, double latencyMs)
    {
        ArgumentNullException.ThrowIfNull(weights);
        return weights.BaseOf(kind) + Variable(weights, bytesRead, bytesWritten, latencyMs);
    }

    /// <summary>The part of the cost that grows while a statement runs (everything but the base).</summary>
    public static double Variable(RuWeights weights, long bytesRead, long bytesWritten, double latencyMs)
    {
        ArgumentNullException.ThrowIfNull(weights);
        return weights.ReadPerByte * bytesRead + weights.WritePer4KiB * (bytesWritten / 4096.0) + weights.LatencyPerMs * latencyMs;
    }
}
