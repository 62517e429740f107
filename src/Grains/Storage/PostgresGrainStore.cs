using System.Text;
using Npgsql;
using NpgsqlTypes;

namespace MProxy.Grains.Storage;

/// <summary>
/// Grain state in PostgreSQL: table <c>mproxy.grains</c>, one row per grain
/// <c>(type, key, version, state jsonb, updated_at)</c>. A call runs in a transaction that holds the
/// row's lock (<c>SELECT … FOR UPDATE</c>), so any host on the same database can serve any key and
/// two hosts never interleave writes to one grain. The schema is created and migrated by
/// <see cref="InitializeAsync"/> under an advisory lock, so silos starting together do not race.
/// </summary>
public sealed class PostgresGrainStore : IGrainStore, IAsyncDisposable
{
    /// <summary>Migrations in order; the index + 1 is the schema version. Append only.</summary>
    private static readonly string[] Migrations =
    [
        """
        CREATE TABLE mproxy.grains (
            type text NOT NULL,
            key text NOT NULL,
            version bigint NOT NULL,
            state jsonb NOT NULL,
            updated_at timestamptz NOT NULL,
            PRIMARY KEY (type, key)
        );
        """,
    ];

    private const long MigrationLockId = 0x6d70726f7879; // "mproxy"

    private readonly NpgsqlDataSource _dataSource;

    public PostgresGrainStore(string connectionString)
    {
        var builder = new NpgsqlConnectionStringBuilder(connectionString);
        Name = $"postgres {builder.Host}:{builder.Port}/{builder.Database}";
        _dataSource = NpgsqlDataSource.Create(builder);
    }

    public string Name { get; }

    public static int SchemaVersion => Migrations.Length;

    public async Task InitializeAsync(CancellationToken cancellationToken)
    {
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);
        await ExecuteAsync(connection, $"""
            SELECT pg_advisory_xact_lock({MigrationLockId});
            CREATE SCHEMA IF NOT EXISTS mproxy;
            CREATE TABLE IF NOT EXISTS mproxy.schema_migrations (version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now());
            """, cancellationToken).ConfigureAwait(false);
        int current;
        await using (var command = new NpgsqlCommand("SELECT coalesce(max(version), 0) FROM mproxy.schema_migrations", connection))
            current = (int)(await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false))!;
        if (current > Migrations.Length)
            throw new InvalidOperationException($"the grain store's schema is at version {current}, newer than this silo knows ({Migrations.Length}): upgrade the silo");
        for (var version = current + 1; version <= Migrations.Length; version++)
        {
            await ExecuteAsync(connection, Migrations[version - 1], cancellationToken).ConfigureAwait(false);
            await using var record = new NpgsqlCommand("INSERT INTO mproxy.schema_migrations (version) VALUES ($1)", connection);
            record.Parameters.Add(new NpgsqlParameter<int> { TypedValue = version });
            await record.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }
        await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
    }

    public async Task<IGrainTransaction> LockAsync(GrainKey key, CancellationToken cancellationToken)
    {
        var connection = await _dataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        NpgsqlTransaction? transaction = null;
        try
        {
            transaction = await connection.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);
            // The placeholder row (version 0) gives FOR UPDATE something to lock when the grain is new;
            // a concurrent first call waits on the insert, then on the row lock.
            await using var batch = new NpgsqlBatch(connection, transaction)
            {
                BatchCommands =
                {
                    Command("INSERT INTO mproxy.grains (type, key, version, state, updated_at) VALUES ($1, $2, 0, 'null', now()) ON CONFLICT DO NOTHING", key),
                    Command("SELECT version, state::text FROM mproxy.grains WHERE type = $1 AND key = $2 FOR UPDATE", key),
                },
            };
            await using var reader = await batch.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            if (!await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                throw new InvalidOperationException($"grain {key}: its row vanished while being locked");
            var version = reader.GetInt64(0);
            var state = version == 0 ? ReadOnlyMemory<byte>.Empty : Encoding.UTF8.GetBytes(reader.GetString(1));
            return new Transaction(key, connection, transaction, version, state);
        }
        catch
        {
            if (transaction is not null)
                await transaction.DisposeAsync().ConfigureAwait(false);
            await connection.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    public async Task<StoredGrain?> ReadAsync(GrainKey key, CancellationToken cancellationToken)
    {
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var command = new NpgsqlCommand("SELECT version, state::text, updated_at FROM mproxy.grains WHERE type = $1 AND key = $2 AND version > 0", connection);
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = key.Type });
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = key.Key });
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        return await reader.ReadAsync(cancellationToken).ConfigureAwait(false)
            ? new StoredGrain(key, reader.GetInt64(0), Encoding.UTF8.GetBytes(reader.GetString(1)), reader.GetFieldValue<DateTimeOffset>(2))
            : null;
    }

    public async Task<IReadOnlyList<StoredGrain>> ListAsync(string type, CancellationToken cancellationToken)
    {
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var command = new NpgsqlCommand("SELECT key, version, state::text, updated_at FROM mproxy.grains WHERE type = $1 AND version > 0 ORDER BY key COLLATE \"C\"", connection);
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = type });
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        var list = new List<StoredGrain>();
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            list.Add(new StoredGrain(new GrainKey(type, reader.GetString(0)), reader.GetInt64(1), Encoding.UTF8.GetBytes(reader.GetString(2)), reader.GetFieldValue<DateTimeOffset>(3)));
        return list;
    }

    public async Task<bool> PingAsync(CancellationToken cancellationToken)
    {
        try
        {
            await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
            await using var command = new NpgsqlCommand("SELECT 1 FROM mproxy.grains LIMIT 1", connection);
            await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false);
            return true;
        }
        catch (NpgsqlException)
        {
            return false;
        }
    }

    public ValueTask DisposeAsync() => _dataSource.DisposeAsync();

    private static NpgsqlBatchCommand Command(string sql, GrainKey key) => new(sql)
    {
        Parameters =
        {
            new NpgsqlParameter<string> { TypedValue = key.Type },
            new NpgsqlParameter<string> { TypedValue = key.Key },
        },
    };

    private static async Task ExecuteAsync(NpgsqlConnection connection, string sql, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
    }

    private sealed class Transaction(GrainKey key, NpgsqlConnection connection, NpgsqlTransaction transaction, long version, ReadOnlyMemory<byte> state)
        : IGrainTransaction
    {
        public long Version => version;

        public ReadOnlyMemory<byte> State => state;

        public async Task CommitAsync(ReadOnlyMemory<byte>? next, DateTimeOffset now, CancellationToken cancellationToken)
        {
            if (next is { } bytes)
            {
                await using var command = new NpgsqlCommand("UPDATE mproxy.grains SET version = $3, state = $4::jsonb, updated_at = $5 WHERE type = $1 AND key = $2", connection, transaction);
                command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = key.Type });
                command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = key.Key });
                command.Parameters.Add(new NpgsqlParameter<long> { TypedValue = version + 1 });
                command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = Encoding.UTF8.GetString(bytes.Span), NpgsqlDbType = NpgsqlDbType.Text });
                command.Parameters.Add(new NpgsqlParameter<DateTimeOffset> { TypedValue = now });
                await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
            }
            await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
        }

        public async ValueTask DisposeAsync()
        {
            await transaction.DisposeAsync().ConfigureAwait(false);
            await connection.DisposeAsync().ConfigureAwait(false);
        }
    }
}
