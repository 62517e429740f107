namespace MProxy.Simulation.Workloads;

/// <summary>The SQL the simulated clients send, with the truth the fake servers act on.</summary>
public static class Statements
{
    public static readonly StatementSpec Begin = new("BEGIN", Writes: false, TxEffect.Begin, MedianMs: 0.2, Rows: 0);

    public static readonly StatementSpec BeginReadOnly = new("BEGIN READ ONLY", Writes: false, TxEffect.Begin, MedianMs: 0.2, Rows: 0);

    public static readonly StatementSpec Commit = new("COMMIT", Writes: false, TxEffect.Commit, MedianMs: 0.8, Rows: 0);

    public static readonly StatementSpec Rollback = new("ROLLBACK", Writes: false, TxEffect.Rollback, MedianMs: 0.2, Rows: 0);

    /// <summary>A session-level SET: pins the client's later transactions to the primary.</summary>
    public static readonly StatementSpec SetApplicationName = new("SET application_name = 'sim'", Writes: false, TxEffect.None, MedianMs: 0.2, Rows: 0);

    public static StatementSpec PointRead(string table, int id) =>
        new($"SELECT id, balance, updated_at FROM {table} WHERE id = {id}", Writes: false, TxEffect.None, MedianMs: 1, Rows: 1);

    public static StatementSpec RangeRead(string table, int id) =>
        new($"SELECT id, balance FROM {table} WHERE id BETWEEN {id} AND {id + 50} ORDER BY id", Writes: false, TxEffect.None, MedianMs: 4, Rows: 50);

    public static StatementSpec PrimaryRead(string table, int id) =>
        new($"/* mproxy: route=primary */ SELECT balance FROM {table} WHERE id = {id}", Writes: false, TxEffect.None, MedianMs: 1, Rows: 1);

    public static StatementSpec Update(string table, int id, int delta) =>
        new($"UPDATE {table} SET balance = balance + {delta} WHERE id = {id}", Writes: true, TxEffect.None, MedianMs: 2.5, Rows: 0);

    public static StatementSpec Insert(string table, int id) =>
        new($"INSERT INTO {table}_log (account, at) VALUES ({id}, now())", Writes: true, TxEffect.None, MedianMs: 2, Rows: 0);

    /// <summary>A reporting query, hinted down to low priority.</summary>
    public static StatementSpec Report(string table, int days) =>
        new($"/* mproxy: priority=low */ SELECT region, sum(amount) FROM {table}_log WHERE at > now() - interval '{days} days' GROUP BY region",
            Writes: false, TxEffect.None, MedianMs: 900, Rows: 40);

    /// <summary>The query shape that turns into a runaway: expensive every time.</summary>
    public static StatementSpec Runaway(string table, int n) =>
        new($"SELECT count(*) FROM {table}_log a JOIN {table}_log b ON a.account = b.account WHERE a.at > now() - interval '{n} hours'",
            Writes: false, TxEffect.None, MedianMs: 4000, Rows: 1);

    /// <summary>A prepared statement's execution; the text is classified once, when the client prepares it.</summary>
    public static StatementSpec PreparedRead(string table, int id) =>
        new($"SELECT id, balance FROM {table} WHERE id = $1 /* {id} */", Writes: false, TxEffect.None, MedianMs: 0.8, Rows: 1, PreparedName: "read_" + table);

    public static string PreparedReadText(string table) => $"SELECT id, balance FROM {table} WHERE id = $1";
}
