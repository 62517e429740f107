namespace MProxy.Edge.Configuration;

/// <summary>A configuration error, reported at start with the offending key instead of a stack trace.</summary>
public sealed class ConfigException(string key, string message) : Exception($"{key}: {message}")
{
    public string Key { get; } = key;
}
