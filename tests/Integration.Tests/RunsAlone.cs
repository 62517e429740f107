namespace MProxy.Integration.Tests;

/// <summary>
/// Tests that need the test process to themselves, run after every parallel collection: ones that
/// signal the whole process (a SIGHUP reaches every edge in it) and ones that measure rates, which
/// only hold while their clients are not starved of CPU by the rest of the suite.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class RunsAlone
{
    public const string Name = "runs alone";
}
