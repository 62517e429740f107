namespace MProxy.Simulation.Workloads;

/// <summary>What a statement does to a transaction, as the server sees it (ground truth, not the classifier's opinion).</summary>
public enum TxEffect
{
    None,
    Begin,
    Commit,
    Rollback,
}

/// <summary>
/// One statement a simulated client sends: the SQL text the edge classifies, and the truth the fake
/// server acts on — whether it writes, its transaction effect, how long it runs and what it returns.
/// The edge never sees the truth; checkers compare the two.
/// </summary>
/// <param name="Text">The SQL text (with any <c>/* mproxy: … */</c> hint).</param>
/// <param name="Writes">It modifies data (a replica must refuse it).</param>
/// <param name="Tx">Its transaction control.</param>
/// <param name="MedianMs">Median service time on an idle, healthy server.</param>
/// <param name="Rows">Rows returned (about 100 bytes each).</param>
/// <param name="PreparedName">Set for an execution of a prepared statement (classified once, at Parse).</param>
public sealed record StatementSpec(string Text, bool Writes, TxEffect Tx, double MedianMs, int Rows, string? PreparedName = null)
{
    public override string ToString() => PreparedName is null ? Text : $"EXECUTE {PreparedName} ({Text})";
}
