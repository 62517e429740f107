namespace MProxy.Edge.Protocols.Postgres;

/// <summary>Messages a client (frontend) sends, valued as their wire tags.</summary>
internal enum PgFrontendCode : byte
{
    Bind = (byte)'B',
    Close = (byte)'C',
    CopyData = (byte)'d',
    CopyDone = (byte)'c',
    CopyFail = (byte)'f',
    Describe = (byte)'D',
    Execute = (byte)'E',
    Flush = (byte)'H',
    FunctionCall = (byte)'F',
    Parse = (byte)'P',
    /// <summary>PasswordMessage, SASLInitialResponse and SASLResponse share this tag.</summary>
    Password = (byte)'p',
    Query = (byte)'Q',
    Sync = (byte)'S',
    Terminate = (byte)'X',
}

/// <summary>Messages a server (backend) sends, valued as their wire tags.</summary>
internal enum PgBackendCode : byte
{
    Authentication = (byte)'R',
    BackendKeyData = (byte)'K',
    BindComplete = (byte)'2',
    CloseComplete = (byte)'3',
    CommandComplete = (byte)'C',
    CopyData = (byte)'d',
    CopyDone = (byte)'c',
    CopyInResponse = (byte)'G',
    CopyOutResponse = (byte)'H',
    CopyBothResponse = (byte)'W',
    DataRow = (byte)'D',
    EmptyQueryResponse = (byte)'I',
    ErrorResponse = (byte)'E',
    FunctionCallResponse = (byte)'V',
    NegotiateProtocolVersion = (byte)'v',
    NoData = (byte)'n',
    NoticeResponse = (byte)'N',
    NotificationResponse = (byte)'A',
    ParameterDescription = (byte)'t',
    ParameterStatus = (byte)'S',
    ParseComplete = (byte)'1',
    PortalSuspended = (byte)'s',
    ReadyForQuery = (byte)'Z',
    RowDescription = (byte)'T',
}

/// <summary>Authentication request subtypes carried by an <see cref="PgBackendCode.Authentication"/> message.</summary>
internal enum PgAuthRequest
{
    Ok = 0,
    CleartextPassword = 3,
    Md5Password = 5,
    Sasl = 10,
    SaslContinue = 11,
    SaslFinal = 12,
}

/// <summary>Transaction status byte of ReadyForQuery.</summary>
internal enum PgTransactionStatus : byte
{
    Idle = (byte)'I',
    InTransaction = (byte)'T',
    Failed = (byte)'E',
}

/// <summary>Codes of the untagged messages a client may send first.</summary>
internal static class PgStartupCodes
{
    public const int ProtocolVersion3 = 196608; // 3.0
    public const int CancelRequest = 80877102;
    public const int SslRequest = 80877103;
    public const int GssEncRequest = 80877104;
}

/// <summary>SQLSTATE codes mproxy reports (https://www.postgresql.org/docs/current/errcodes-appendix.html).</summary>
internal static class PgSqlState
{
    public const string ProtocolViolation = "08P01";
    public const string ConnectionFailure = "08006";
    public const string ServerRejectedConnection = "08004";
    public const string TooManyConnections = "53300";
    public const string ConfigurationLimitExceeded = "53400";
    public const string QueryCanceled = "57014";
    public const string AdminShutdown = "57P01";
    public const string CannotConnectNow = "57P03";
    public const string InvalidPassword = "28P01";
    public const string InvalidAuthorizationSpecification = "28000";
    public const string InvalidCatalogName = "3D000";
    public const string FeatureNotSupported = "0A000";
    public const string InsufficientPrivilege = "42501";
    public const string InternalError = "XX000";
}
