namespace MProxy.Edge.Tests;

/// <summary>
/// Tests that need the test process to themselves, run after every parallel collection: ones that
/// count the process's descriptors, which other tests open and close at the same time.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class RunsAlone
{
    public const string Name = "runs alone";
}
