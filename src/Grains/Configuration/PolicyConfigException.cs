namespace MProxy.Grains.Configuration;

/// <summary>A policy file error, reported with the offending key instead of a stack trace.</summary>
public sealed class PolicyConfigException(string key, string message) : Exception($"{key}: {message}")
{
    public string Key { get; } = key;
}
