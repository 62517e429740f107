namespace MProxy.Edge.Protocols.MySql;

/// <summary>Command bytes of the client/server protocol (the first byte of a command packet).</summary>
internal enum MySqlCommandCode : byte
{
    Sleep = 0x00,
    Quit = 0x01,
    InitDb = 0x02,
    Query = 0x03,
    FieldList = 0x04,
    CreateDb = 0x05,
    DropDb = 0x06,
    Refresh = 0x07,
    Shutdown = 0x08,
    Statistics = 0x09,
    ProcessInfo = 0x0A,
    Connect = 0x0B,
    ProcessKill = 0x0C,
    Debug = 0x0D,
    Ping = 0x0E,
    Time = 0x0F,
    DelayedInsert = 0x10,
    ChangeUser = 0x11,
    BinlogDump = 0x12,
    TableDump = 0x13,
    ConnectOut = 0x14,
    RegisterSlave = 0x15,
    StmtPrepare = 0x16,
    StmtExecute = 0x17,
    StmtSendLongData = 0x18,
    StmtClose = 0x19,
    StmtReset = 0x1A,
    SetOption = 0x1B,
    StmtFetch = 0x1C,
    Daemon = 0x1D,
    BinlogDumpGtid = 0x1E,
    ResetConnection = 0x1F,
}

/// <summary>The first byte of a response packet that the edge tells apart.</summary>
internal static class MySqlResponseHeader
{
    public const byte Ok = 0x00;
    public const byte LocalInfile = 0xFB;
    public const byte Eof = 0xFE;
    public const byte Err = 0xFF;

    /// <summary>AuthMoreData during login.</summary>
    public const byte AuthMoreData = 0x01;

    /// <summary>AuthSwitchRequest during login (same byte as EOF).</summary>
    public const byte AuthSwitch = 0xFE;
}

/// <summary>Capability flags (CLIENT_*), negotiated in the handshake.</summary>
[Flags]
internal enum MySqlCapabilities : uint
{
    None = 0,
    LongPassword = 1u << 0,
    FoundRows = 1u << 1,
    LongFlag = 1u << 2,
    ConnectWithDb = 1u << 3,
    NoSchema = 1u << 4,
    Compress = 1u << 5,
    Odbc = 1u << 6,
    LocalFiles = 1u << 7,
    IgnoreSpace = 1u << 8,
    Protocol41 = 1u << 9,
    Interactive = 1u << 10,
    Ssl = 1u << 11,
    IgnoreSigpipe = 1u << 12,
    Transactions = 1u << 13,
    Reserved = 1u << 14,
    SecureConnection = 1u << 15,
    MultiStatements = 1u << 16,
    MultiResults = 1u << 17,
    PsMultiResults = 1u << 18,
    PluginAuth = 1u << 19,
    ConnectAttrs = 1u << 20,
    PluginAuthLenencClientData = 1u << 21,
    CanHandleExpiredPasswords = 1u << 22,
    SessionTrack = 1u << 23,
    DeprecateEof = 1u << 24,
}

/// <summary>Server status flags (SERVER_STATUS_*) carried by OK and EOF packets.</summary>
[Flags]
internal enum MySqlServerStatus : ushort
{
    None = 0,
    InTransaction = 0x0001,
    Autocommit = 0x0002,
    MoreResultsExist = 0x0008,
    NoGoodIndexUsed = 0x0010,
    NoIndexUsed = 0x0020,
    CursorExists = 0x0040,
    LastRowSent = 0x0080,
    DatabaseDropped = 0x0100,
    NoBackslashEscapes = 0x0200,
    MetadataChanged = 0x0400,
    QueryWasSlow = 0x0800,
    PsOutParams = 0x1000,
    InTransactionReadOnly = 0x2000,
    SessionStateChanged = 0x4000,
}

/// <summary>
/// Error codes (and their SQLSTATEs) of the ERR packets the edge writes itself. The MySQL code says
/// what kind of failure it is to MySQL clients; the message names the SQL-standard SQLSTATE the
/// PostgreSQL side uses for the same refusal (53300, 53400, 57014…). See README.md for the mapping.
/// </summary>
internal readonly record struct MySqlError(ushort Code, string SqlState)
{
    /// <summary>ER_CON_COUNT_ERROR: too many clients, pool wait or scheduler queue timed out (SQLSTATE 53300 semantics).</summary>
    public static readonly MySqlError TooManyConnections = new(1040, "08004");

    /// <summary>ER_USER_LIMIT_REACHED: RU budget exhausted, shed or throttled (SQLSTATE 53400 semantics).</summary>
    public static readonly MySqlError ResourceLimit = new(1226, "42000");

    /// <summary>ER_QUERY_INTERRUPTED: a runaway query cancelled or rejected (SQLSTATE 57014 semantics).</summary>
    public static readonly MySqlError QueryInterrupted = new(1317, "70100");

    /// <summary>ER_SERVER_SHUTDOWN: the proxy or a pool is shutting down, or the server is unavailable (SQLSTATE 57P03 semantics).</summary>
    public static readonly MySqlError ServerShutdown = new(1053, "08S01");

    /// <summary>ER_ACCESS_DENIED_ERROR: authentication failed (28000).</summary>
    public static readonly MySqlError AccessDenied = new(1045, "28000");

    /// <summary>ER_BAD_DB_ERROR: the database is not configured.</summary>
    public static readonly MySqlError UnknownDatabase = new(1049, "42000");

    /// <summary>ER_NET_PACKETS_OUT_OF_ORDER: malformed packet (SQLSTATE 08P01 semantics); the connection closes.</summary>
    public static readonly MySqlError MalformedPacket = new(1156, "08S01");

    /// <summary>ER_NET_PACKET_TOO_LARGE: a packet over clients.maxMessageBytes; the connection closes.</summary>
    public static readonly MySqlError PacketTooLarge = new(1153, "08S01");

    /// <summary>ER_UNKNOWN_COM_ERROR: a command the edge does not relay.</summary>
    public static readonly MySqlError UnknownCommand = new(1047, "08S01");

    /// <summary>ER_NOT_ALLOWED_COMMAND: LOAD DATA LOCAL while it is not enabled.</summary>
    public static readonly MySqlError NotAllowedCommand = new(1148, "42000");

    /// <summary>ER_UNKNOWN_STMT_HANDLER: a statement id the client never prepared (or closed).</summary>
    public static readonly MySqlError UnknownStatement = new(1243, "HY000");

    /// <summary>ER_PARSE_ERROR: several statements in one COM_QUERY without CLIENT_MULTI_STATEMENTS.</summary>
    public static readonly MySqlError ParseError = new(1064, "42000");

    /// <summary>ER_HANDSHAKE_ERROR: the client's handshake is unusable.</summary>
    public static readonly MySqlError HandshakeError = new(1043, "08S01");

    /// <summary>ER_SECURE_TRANSPORT_REQUIRED: a cleartext login where TLS is required.</summary>
    public static readonly MySqlError SecureTransportRequired = new(3159, "HY000");

    /// <summary>ER_NOT_SUPPORTED_AUTH_MODE: no authentication method in common.</summary>
    public static readonly MySqlError NotSupportedAuthMode = new(1251, "08004");

    /// <summary>ER_CONNECTION_KILLED: the edge lost the server connection under the client.</summary>
    public static readonly MySqlError ConnectionLost = new(1927, "70100");

    /// <summary>ER_QUERY_INTERRUPTED as the server sends it (the code a KILL QUERY produces).</summary>
    public const ushort ServerQueryInterrupted = 1317;

    /// <summary>The refusal's MySQL error for a QoS SQLSTATE.</summary>
    public static MySqlError ForSqlState(string sqlState) => sqlState switch
    {
        "53300" => TooManyConnections,
        "53400" => ResourceLimit,
        "57014" => QueryInterrupted,
        _ => ServerShutdown,
    };
}

/// <summary>Authentication plugin names.</summary>
internal static class MySqlAuthPlugins
{
    public const string NativePassword = "mysql_native_password";
    public const string CachingSha2Password = "caching_sha2_password";
    public const string Sha256Password = "sha256_password";
}
