namespace MProxy.Abstractions;

/// <summary>The priority class of a tenant's (or a query's) work; HIGH is served first, LOW is shed first.</summary>
public enum Priority
{
    High = 0,
    Medium = 1,
    Low = 2,
}
