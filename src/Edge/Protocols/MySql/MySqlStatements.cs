using MProxy.Edge.Routing;

namespace MProxy.Edge.Protocols.MySql;

/// <summary>Where a client's prepared statement stands.</summary>
internal enum MySqlStatementState : byte
{
    /// <summary>COM_STMT_PREPARE sent; PREPARE_OK not seen yet.</summary>
    Preparing,
    Prepared,
    Failed,
}

/// <summary>
/// A statement a client prepared, under the id the edge gave it. Its text is what lets the edge
/// prepare it again, transparently, on whichever pooled server connection runs an execution.
/// </summary>
internal sealed class MySqlClientStatement(uint id, byte[] sql, ulong fingerprint, bool isWrite, QueryHints hints)
{
    public uint Id { get; } = id;

    /// <summary>The statement's text as the client sent it.</summary>
    public byte[] Sql { get; } = sql;

    /// <summary>The text as a dictionary key for the per-connection statement caches.</summary>
    public string Key { get; } = System.Text.Encoding.UTF8.GetString(sql);

    public ulong Fingerprint { get; } = fingerprint;

    public bool IsWrite { get; } = isWrite;

    public QueryHints Hints { get; } = hints;

    private volatile MySqlStatementState _state;

    public MySqlStatementState State
    {
        get => _state;
        set => _state = value;
    }

    public ushort Parameters { get; set; }

    public ushort Columns { get; set; }

    /// <summary>The server statement this statement last ran as, on <see cref="CachedServer"/> at <see cref="CachedGeneration"/> (saves the cache lookup on the hot path).</summary>
    public MySqlServerStatement? CachedServerStatement { get; set; }

    public MySqlServerConnection? CachedServer { get; set; }

    public int CachedGeneration { get; set; }

    /// <summary>The parameter types the client bound last (2 bytes per parameter), re-sent where a server statement has not seen them.</summary>
    public byte[]? ParameterTypes { get; set; }
}

/// <summary>A statement prepared on one server connection (shared by every client that prepares the same text).</summary>
internal sealed class MySqlServerStatement(uint serverId, ushort parameters)
{
    public uint ServerId { get; } = serverId;

    public ushort Parameters { get; } = parameters;

    /// <summary>The parameter types this server statement was last executed with (reference of the client's array).</summary>
    public byte[]? TypesSent { get; set; }
}
