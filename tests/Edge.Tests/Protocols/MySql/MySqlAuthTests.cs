using System.Buffers;
using System.IO.Pipelines;
using System.Security.Cryptography;
using System.Text;
using MProxy.Edge.Configuration;
using MProxy.Edge.Protocols.MySql;

namespace MProxy.Edge.Tests.Protocols.MySql;

/// <summary>Password scrambles, and the edge's server login against a scripted server (caching_sha2_password fast path and RSA full authentication, auth switch).</summary>
public sealed class MySqlAuthTests
{
    private static readonly byte[] Nonce = Encoding.ASCII.GetBytes("abcdefghijklmnopqrst");

    [Fact]
    public void NativePassword_MatchesTheDocumentedFormula()
    {
        // SHA1(password) XOR SHA1(nonce + SHA1(SHA1(password))), computed step by step here.
        var stage1 = SHA1.HashData(Encoding.UTF8.GetBytes("secret"));
        var mask = SHA1.HashData([.. Nonce, .. SHA1.HashData(stage1)]);
        var expected = stage1.Zip(mask, (a, b) => (byte)(a ^ b)).ToArray();
        Assert.Equal(expected, MySqlAuth.NativePassword("secret", Nonce));
        Assert.Equal(20, expected.Length);
    }

    [Fact]
    public void CachingSha2Password_MatchesTheDocumentedFormula()
    {
        // SHA256(password) XOR SHA256(SHA256(SHA256(password)) + nonce).
        var stage1 = SHA256.HashData(Encoding.UTF8.GetBytes("secret"));
        var mask = SHA256.HashData([.. SHA256.HashData(stage1), .. Nonce]);
        var expected = stage1.Zip(mask, (a, b) => (byte)(a ^ b)).ToArray();
        Assert.Equal(expected, MySqlAuth.CachingSha2Password("secret", Nonce));
    }

    [Fact]
    public void Scrambles_EmptyPassword_AreEmpty()
    {
        Assert.Empty(MySqlAuth.NativePassword("", Nonce));
        Assert.Empty(MySqlAuth.CachingSha2Password("", Nonce));
    }

    [Fact]
    public void Scrambles_DependOnTheNonce() =>
        Assert.NotEqual(MySqlAuth.NativePassword("secret", Nonce), MySqlAuth.NativePassword("secret", Encoding.ASCII.GetBytes("ABCDEFGHIJKLMNOPQRST")));

    [Fact]
    public void EncryptPassword_DecryptsWithThePrivateKey()
    {
        using var rsa = RSA.Create(2048);
        var encrypted = MySqlAuth.EncryptPassword("pässword", Nonce, rsa.ExportSubjectPublicKeyInfoPem());
        Assert.Equal(256, encrypted.Length);
        Assert.Equal("pässword", MySqlAuth.DecryptPassword(encrypted, Nonce, rsa));
    }

    [Fact]
    public void CreateNonce_IsPrintableAndFresh()
    {
        var a = MySqlAuth.CreateNonce();
        Assert.Equal(20, a.Length);
        Assert.All(a, b => Assert.InRange(b, (byte)0x21, (byte)0x7E));
        Assert.NotEqual(a, MySqlAuth.CreateNonce());
    }

    [Theory]
    [InlineData(MySqlAuthPlugins.NativePassword)]
    [InlineData(MySqlAuthPlugins.CachingSha2Password)]
    public void Verify_RightScramble_Passes_WrongOrUnknownUser_Fails(string plugin)
    {
        var user = new UserConfig { Name = "u", Password = "pw" };
        var scramble = plugin == MySqlAuthPlugins.NativePassword ? MySqlAuth.NativePassword("pw", Nonce) : MySqlAuth.CachingSha2Password("pw", Nonce);
        Assert.True(MySqlClientLogin.Verify(plugin, scramble, Nonce, AuthMethod.Md5, user));
        Assert.False(MySqlClientLogin.Verify(plugin, scramble, Encoding.ASCII.GetBytes("ABCDEFGHIJKLMNOPQRST"), AuthMethod.Md5, user));
        Assert.False(MySqlClientLogin.Verify(plugin, scramble, Nonce, AuthMethod.Md5, user with { Password = "other" }));
        Assert.False(MySqlClientLogin.Verify(plugin, scramble, Nonce, AuthMethod.Md5, null));
        Assert.False(MySqlClientLogin.Verify(plugin, scramble, Nonce, AuthMethod.Md5, user with { Password = null }));
    }

    // ------------------------------------------------------------------ scripted server

    private sealed class ScriptedServer
    {
        private readonly Pipe _toEdge = new();
        private readonly Pipe _fromEdge = new();

        public PipeReader EdgeInput => _toEdge.Reader;

        public PipeWriter EdgeOutput => _fromEdge.Writer;

        public async Task SendAsync(byte sequence, byte[] payload)
        {
            MySqlFrame.WriteMessage(_toEdge.Writer, sequence, payload);
            await _toEdge.Writer.FlushAsync();
        }

        public async Task<(byte Sequence, byte[] Payload)> ReadAsync()
        {
            while (true)
            {
                var result = await _fromEdge.Reader.ReadAsync();
                if (MySqlFrame.TryReadMessage(result.Buffer, 1 << 20, out var message, out _, out var sequence, out var split))
                {
                    var payload = MySqlFrame.Payload(message, split).ToArray();
                    _fromEdge.Reader.AdvanceTo(message.End);
                    return (sequence, payload);
                }
                _fromEdge.Reader.AdvanceTo(result.Buffer.Start, result.Buffer.End);
            }
        }

        public static byte[] Handshake(string plugin, byte[] nonce)
        {
            var caps = (uint)(MySqlServerLogin.Wanted | MySqlCapabilities.FoundRows);
            var p = new ArrayBufferWriter<byte>();
            p.Put(10);
            p.PutNullTerminated("8.0.36-scripted");
            p.PutUInt32(42);
            p.Write(nonce.AsSpan(0, 8));
            p.Put(0);
            p.PutUInt16((ushort)(caps & 0xFFFF));
            p.Put(45);
            p.PutUInt16((ushort)MySqlServerStatus.Autocommit);
            p.PutUInt16((ushort)(caps >> 16));
            p.Put(21);
            p.PutZeros(10);
            p.Write(nonce.AsSpan(8));
            p.Put(0);
            p.PutNullTerminated(plugin);
            return p.WrittenSpan.ToArray();
        }

        /// <summary>The auth response and plugin of a HandshakeResponse41.</summary>
        public static (byte[] Auth, string Plugin, string User, string Database) ParseResponse(byte[] payload)
        {
            var reader = new MySqlPayloadReader(payload);
            reader.Skip(4 + 4 + 1 + 23);
            var user = reader.ReadNullTerminatedString();
            var auth = reader.ReadLengthEncodedBytes().ToArray();
            var database = reader.ReadNullTerminatedString();
            var plugin = reader.ReadNullTerminatedString();
            return (auth, plugin, user, database);
        }
    }

    private static readonly byte[] OkPacket = [0x00, 0, 0, 2, 0, 0, 0];

    private static MySqlLoginRequest Request => new("app", "pw", "appdb", 45, MySqlServerLogin.Wanted);

    [Fact]
    public async Task ServerLogin_CachingSha2FastPath_SendsTheSha256Scramble()
    {
        var server = new ScriptedServer();
        var login = MySqlServerLogin.LoginAsync(server.EdgeInput, server.EdgeOutput, Request, CancellationToken.None);
        await server.SendAsync(0, ScriptedServer.Handshake(MySqlAuthPlugins.CachingSha2Password, Nonce));
        var (sequence, response) = await server.ReadAsync();
        Assert.Equal(1, sequence);
        var (auth, plugin, user, database) = ScriptedServer.ParseResponse(response);
        Assert.Equal(("app", "appdb", MySqlAuthPlugins.CachingSha2Password), (user, database, plugin));
        Assert.Equal(MySqlAuth.CachingSha2Password("pw", Nonce), auth);
        await server.SendAsync(2, [0x01, 0x03]); // fast auth success
        await server.SendAsync(3, OkPacket);
        var handshake = await login;
        Assert.Equal(42u, handshake.ConnectionId);
        Assert.Equal("8.0.36-scripted", handshake.ServerVersion);
    }

    [Fact]
    public async Task ServerLogin_CachingSha2FullAuthWithoutTls_SendsThePasswordEncryptedWithTheServersKey()
    {
        using var rsa = RSA.Create(2048);
        var server = new ScriptedServer();
        var login = MySqlServerLogin.LoginAsync(server.EdgeInput, server.EdgeOutput, Request, CancellationToken.None);
        await server.SendAsync(0, ScriptedServer.Handshake(MySqlAuthPlugins.CachingSha2Password, Nonce));
        await server.ReadAsync();
        await server.SendAsync(2, [0x01, 0x04]); // perform full authentication
        var (keyRequestSequence, keyRequest) = await server.ReadAsync();
        Assert.Equal(3, keyRequestSequence);
        Assert.Equal(new byte[] { 0x02 }, keyRequest);
        await server.SendAsync(4, [0x01, .. Encoding.ASCII.GetBytes(rsa.ExportSubjectPublicKeyInfoPem())]);
        var (encryptedSequence, encrypted) = await server.ReadAsync();
        Assert.Equal(5, encryptedSequence);
        Assert.Equal("pw", MySqlAuth.DecryptPassword(encrypted, Nonce, rsa));
        await server.SendAsync(6, OkPacket);
        await login;
    }

    [Fact]
    public async Task ServerLogin_AuthSwitchToNative_AnswersTheNewNonce()
    {
        var newNonce = Encoding.ASCII.GetBytes("ZYXWVUTSRQPONMLKJIHG");
        var server = new ScriptedServer();
        var login = MySqlServerLogin.LoginAsync(server.EdgeInput, server.EdgeOutput, Request, CancellationToken.None);
        await server.SendAsync(0, ScriptedServer.Handshake(MySqlAuthPlugins.CachingSha2Password, Nonce));
        await server.ReadAsync();
        await server.SendAsync(2, [0xFE, .. Encoding.ASCII.GetBytes(MySqlAuthPlugins.NativePassword), 0, .. newNonce, 0]);
        var (sequence, scramble) = await server.ReadAsync();
        Assert.Equal(3, sequence);
        Assert.Equal(MySqlAuth.NativePassword("pw", newNonce), scramble);
        await server.SendAsync(4, OkPacket);
        await login;
    }

    [Fact]
    public async Task ServerLogin_ErrPacket_ThrowsWithCodeAndMessage()
    {
        var server = new ScriptedServer();
        var login = MySqlServerLogin.LoginAsync(server.EdgeInput, server.EdgeOutput, Request, CancellationToken.None);
        await server.SendAsync(0, ScriptedServer.Handshake(MySqlAuthPlugins.NativePassword, Nonce));
        var (_, response) = await server.ReadAsync();
        Assert.Equal(MySqlAuth.NativePassword("pw", Nonce), ScriptedServer.ParseResponse(response).Auth);
        await server.SendAsync(2, [0xFF, 0x15, 0x04, (byte)'#', .. "28000"u8.ToArray(), .. "Access denied"u8.ToArray()]);
        var e = await Assert.ThrowsAsync<MySqlServerLoginException>(() => login);
        Assert.Equal(1045, e.Code);
        Assert.Equal("28000", e.SqlState);
        Assert.Equal("Access denied", e.Message);
    }

    [Fact]
    public async Task ServerLogin_UnsupportedPluginSwitch_Fails()
    {
        var server = new ScriptedServer();
        var login = MySqlServerLogin.LoginAsync(server.EdgeInput, server.EdgeOutput, Request, CancellationToken.None);
        await server.SendAsync(0, ScriptedServer.Handshake(MySqlAuthPlugins.NativePassword, Nonce));
        await server.ReadAsync();
        await server.SendAsync(2, [0xFE, .. "client_ed25519"u8.ToArray(), 0, .. Nonce, 0]);
        var e = await Assert.ThrowsAsync<MySqlServerLoginException>(() => login);
        Assert.Contains("client_ed25519", e.Message);
    }
}
