using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace MProxy.Abstractions.Policy;

/// <summary>A tenant: the owner of an RU budget. Serialized as a plain JSON string.</summary>
[JsonConverter(typeof(TenantIdJsonConverter))]
public readonly record struct TenantId(string Value) : IComparable<TenantId>
{
    public int CompareTo(TenantId other) => string.CompareOrdinal(Value, other.Value);

    public override string ToString() => Value;
}

/// <summary>One edge process, stable for its lifetime (host name plus a start nonce, say). Serialized as a plain JSON string.</summary>
[JsonConverter(typeof(EdgeIdJsonConverter))]
public readonly record struct EdgeId(string Value) : IComparable<EdgeId>
{
    public int CompareTo(EdgeId other) => string.CompareOrdinal(Value, other.Value);

    public override string ToString() => Value;
}

/// <summary>A backend database (the name its connection limit is configured under). Serialized as a plain JSON string.</summary>
[JsonConverter(typeof(BackendIdJsonConverter))]
public readonly record struct BackendId(string Value) : IComparable<BackendId>
{
    public int CompareTo(BackendId other) => string.CompareOrdinal(Value, other.Value);

    public override string ToString() => Value;
}

/// <summary>
/// A query shape (its text with literals normalized), hashed to 64 bits. Serialized as 16 lowercase
/// hex digits so that JavaScript (the dashboard) does not round it.
/// </summary>
[JsonConverter(typeof(FingerprintIdJsonConverter))]
public readonly record struct FingerprintId(ulong Value) : IComparable<FingerprintId>
{
    public int CompareTo(FingerprintId other) => Value.CompareTo(other.Value);

    public override string ToString() => Value.ToString("x16", CultureInfo.InvariantCulture);

    public static bool TryParse(string? text, out FingerprintId id)
    {
        var ok = ulong.TryParse(text, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var value);
        id = new FingerprintId(value);
        return ok;
    }
}

public sealed class TenantIdJsonConverter : JsonConverter<TenantId>
{
    public override TenantId Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) => new(IdJson.ReadString(ref reader));

    public override void Write(Utf8JsonWriter writer, TenantId value, JsonSerializerOptions options) => writer.WriteStringValue(value.Value);

    public override TenantId ReadAsPropertyName(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) => new(IdJson.ReadString(ref reader));

    public override void WriteAsPropertyName(Utf8JsonWriter writer, TenantId value, JsonSerializerOptions options) => writer.WritePropertyName(value.Value);
}

public sealed class EdgeIdJsonConverter : JsonConverter<EdgeId>
{
    public override EdgeId Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) => new(IdJson.ReadString(ref reader));

    public override void Write(Utf8JsonWriter writer, EdgeId value, JsonSerializerOptions options) => writer.WriteStringValue(value.Value);

    public override EdgeId ReadAsPropertyName(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) => new(IdJson.ReadString(ref reader));

    public override void WriteAsPropertyName(Utf8JsonWriter writer, EdgeId value, JsonSerializerOptions options) => writer.WritePropertyName(value.Value);
}

public sealed class BackendIdJsonConverter : JsonConverter<BackendId>
{
    public override BackendId Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) => new(IdJson.ReadString(ref reader));

    public override void Write(Utf8JsonWriter writer, BackendId value, JsonSerializerOptions options) => writer.WriteStringValue(value.Value);

    public override BackendId ReadAsPropertyName(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) => new(IdJson.ReadString(ref reader));

    public override void WriteAsPropertyName(Utf8JsonWriter writer, BackendId value, JsonSerializerOptions options) => writer.WritePropertyName(value.Value);
}

public sealed class FingerprintIdJsonConverter : JsonConverter<FingerprintId>
{
    public override FingerprintId Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) => Parse(IdJson.ReadString(ref reader));

    public override void Write(Utf8JsonWriter writer, FingerprintId value, JsonSerializerOptions options) => writer.WriteStringValue(value.ToString());

    public override FingerprintId ReadAsPropertyName(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) => Parse(IdJson.ReadString(ref reader));

    public override void WriteAsPropertyName(Utf8JsonWriter writer, FingerprintId value, JsonSerializerOptions options) => writer.WritePropertyName(value.ToString());

    private static FingerprintId Parse(string text) =>
        FingerprintId.TryParse(text, out var id) ? id : throw new JsonException($"'{text}' is not a 64-bit hex fingerprint");
}

internal static class IdJson
{
    public static string ReadString(ref Utf8JsonReader reader) =>
        reader.GetString() is { Length: > 0 } text ? text : throw new JsonException("an id must be a non-empty string");
}
