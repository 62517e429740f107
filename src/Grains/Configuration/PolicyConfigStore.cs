using MProxy.Abstractions.Policy;

namespace MProxy.Grains.Configuration;

/// <summary>Holds the policy snapshot in force; a reload swaps the one reference.</summary>
public sealed class PolicyConfigStore(PolicyConfig initial)
{
    private volatile PolicyConfig _current = initial;

    public PolicyConfig Current => _current;

    public event Action<PolicyConfig>? Changed;

    public void Swap(PolicyConfig next)
    {
        _current = next;
        Changed?.Invoke(next);
    }
}
