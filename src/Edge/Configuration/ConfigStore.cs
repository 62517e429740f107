namespace MProxy.Edge.Configuration;

/// <summary>Holds the current configuration snapshot; a reload swaps the one reference.</summary>
public sealed class ConfigStore(EdgeConfig initial)
{
    private volatile EdgeConfig _current = initial;

    public EdgeConfig Current => _current;

    public event Action<EdgeConfig>? Changed;

    public void Swap(EdgeConfig next)
    {
        _current = next;
        Changed?.Invoke(next);
    }
}
