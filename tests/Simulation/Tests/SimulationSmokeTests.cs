using MProxy.Simulation.World;

namespace MProxy.Simulation.Tests;

public sealed class SimulationSmokeTests(ITestOutputHelper output)
{
    [Fact]
    public void Run_FirstSeeds_Pass()
    {
        for (ulong seed = 1; seed <= 8; seed++)
        {
            var result = SimWorld.Run(seed);
            output.WriteLine(result.Summary());
            Assert.True(result.Passed, result.Report());
        }
    }
}
