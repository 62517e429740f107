using System.Text.Json.Serialization;
using MProxy.Grains.Budgets;
using MProxy.Grains.Capacity;
using MProxy.Grains.Edges;
using MProxy.Grains.Fingerprints;

namespace MProxy.Grains.Hosting;

/// <summary>Source-generated JSON for grain states as the stores keep them.</summary>
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, UseStringEnumConverter = true)]
[JsonSerializable(typeof(TenantBudgetState))]
[JsonSerializable(typeof(FingerprintState))]
[JsonSerializable(typeof(CapacityState))]
[JsonSerializable(typeof(EdgeState))]
public sealed partial class GrainStateJsonContext : JsonSerializerContext;
