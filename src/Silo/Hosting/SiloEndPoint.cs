using System.Globalization;
using System.Net;
using MProxy.Grains.Configuration;
using Npgsql;

namespace MProxy.Silo.Hosting;

internal static class SiloEndPoint
{
    /// <summary>host:port with a literal address, <c>*</c> (any) or <c>localhost</c>.</summary>
    public static IPEndPoint Parse(string key, string text)
    {
        var colon = text.LastIndexOf(':');
        if (colon < 0 || !int.TryParse(text.AsSpan(colon + 1), NumberStyles.None, CultureInfo.InvariantCulture, out var port) || port > 65535)
            throw new PolicyConfigException(key, $"'{text}' is not host:port");
        var host = text[..colon].Trim('[', ']');
        var address = host switch
        {
            "localhost" => IPAddress.Loopback,
            "*" or "" => IPAddress.Any,
            _ => IPAddress.TryParse(host, out var parsed) ? parsed : throw new PolicyConfigException(key, $"'{host}' is not an IP address, '*' or 'localhost'"),
        };
        return new IPEndPoint(address, port);
    }

    /// <summary>A Npgsql connection string from either form users write; postgres:// URLs are converted.</summary>
    public static string PostgresConnectionString(string store)
    {
        if (!store.StartsWith("postgres://", StringComparison.Ordinal) && !store.StartsWith("postgresql://", StringComparison.Ordinal))
            return new NpgsqlConnectionStringBuilder(store).ConnectionString;
        var uri = new Uri(store);
        var builder = new NpgsqlConnectionStringBuilder
        {
            Host = uri.Host.Trim('[', ']'),
            Port = uri.Port < 0 ? 5432 : uri.Port,
            Database = Uri.UnescapeDataString(uri.AbsolutePath.TrimStart('/')) is { Length: > 0 } db ? db : "mproxy",
        };
        if (uri.UserInfo.Length > 0)
        {
            var colon = uri.UserInfo.IndexOf(':', StringComparison.Ordinal);
            builder.Username = Uri.UnescapeDataString(colon < 0 ? uri.UserInfo : uri.UserInfo[..colon]);
            if (colon >= 0)
                builder.Password = Uri.UnescapeDataString(uri.UserInfo[(colon + 1)..]);
        }
        return builder.ConnectionString;
    }
}
