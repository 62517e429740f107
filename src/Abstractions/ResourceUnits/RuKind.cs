namespace MProxy.Abstractions.ResourceUnits;

/// <summary>Which base cost a statement pays: a read (<see cref="RuWeights.ReadBase"/>) or a write (<see cref="RuWeights.WriteBase"/>).</summary>
public enum RuKind
{
    Read = 0,
    Write = 1,
}
