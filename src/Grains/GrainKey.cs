namespace MProxy.Grains;

/// <summary>The identity of one grain: its type and its key (a tenant, a backend, a tenant and fingerprint).</summary>
public readonly record struct GrainKey(string Type, string Key)
{
    public override string ToString() => $"{Type}/{Key}";
}
