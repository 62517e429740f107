namespace MProxy.Edge.Qos;

/// <summary>
/// What one server connection carries of the QoS groups it served: the group whose server settings
/// and statement timeout were last applied to it, as the edge wrote them. Each protocol adapter
/// asks <see cref="Plan"/> what must change for the next admitted unit and renders that in its own
/// SQL (<c>SET … TO</c>/<c>RESET</c> for PostgreSQL, <c>SET SESSION … = …|DEFAULT</c> for MySQL), so the
/// common case — the same group as last time — costs one reference comparison.
/// </summary>
/// <remarks>Used only by whoever writes to the connection (the attached client's loop, or the edge's reset while it is idle).</remarks>
internal sealed class AppliedGroupSettings
{
    private readonly Dictionary<string, string> _settings = new(StringComparer.OrdinalIgnoreCase);
    private ResourceGroupConfig? _group;
    private TimeSpan _statementTimeout;

    /// <summary>
    /// Fills <paramref name="changes"/> with the settings that bring this connection from what it has
    /// to <paramref name="admission"/>'s group — a null value puts a setting back to the server's
    /// default — and records that group as applied. <paramref name="statementTimeout"/> is the new
    /// timeout when it changes (<see cref="TimeSpan.Zero"/>: back to none), null otherwise. False
    /// when nothing changes.
    /// </summary>
    public bool Plan(in QosAdmission admission, List<KeyValuePair<string, string?>> changes, out TimeSpan? statementTimeout)
    {
        changes.Clear();
        statementTimeout = null;
        var group = admission.Group;
        if (ReferenceEquals(_group, group) && _statementTimeout == admission.StatementTimeout)
            return false;
        var wanted = group?.ServerSettings ?? [];
        foreach (var (name, value) in wanted)
        {
            if (!_settings.TryGetValue(name, out var applied) || applied != value)
                changes.Add(new(name, value));
        }
        foreach (var name in _settings.Keys)
        {
            var stillWanted = false;
            foreach (var (n, _) in wanted)
                stillWanted |= string.Equals(n, name, StringComparison.OrdinalIgnoreCase);
            if (!stillWanted)
                changes.Add(new(name, null));
        }
        if (admission.StatementTimeout != _statementTimeout)
            statementTimeout = admission.StatementTimeout;
        _settings.Clear();
        foreach (var (name, value) in wanted)
            _settings[name] = value;
        _group = group;
        _statementTimeout = admission.StatementTimeout;
        return changes.Count > 0 || statementTimeout is not null;
    }

    /// <summary>The server reset the session (DISCARD ALL, COM_RESET_CONNECTION): everything is back at the server's defaults.</summary>
    public void Forget()
    {
        _settings.Clear();
        _group = null;
        _statementTimeout = TimeSpan.Zero;
    }
}
