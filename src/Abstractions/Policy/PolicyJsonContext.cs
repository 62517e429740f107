using System.Text.Json.Serialization;

namespace MProxy.Abstractions.Policy;

/// <summary>Source-generated JSON for the edge↔tier exchange and the dashboard's read models (camelCase, enums as strings).</summary>
[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase,
    UseStringEnumConverter = true,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(PolicyExchangeRequest))]
[JsonSerializable(typeof(PolicyExchangeResponse))]
[JsonSerializable(typeof(PolicySnapshot))]
public sealed partial class PolicyJsonContext : JsonSerializerContext;
