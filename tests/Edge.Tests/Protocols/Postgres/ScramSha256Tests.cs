using System.Text;
using MProxy.Edge.Protocols.Postgres.Auth;

namespace MProxy.Edge.Tests.Protocols.Postgres;

public sealed class ScramSha256Tests
{
    // RFC 7677 section 3: user "user", password "pencil".
    private const string ClientNonce = "rOprNGfwEbeRWgbNEkqO";
    private const string ServerNonceSuffix = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
    private static readonly byte[] RfcSalt = Convert.FromBase64String("W22ZaJ0SNY7soEsUEjb6gQ==");

    [Fact]
    public void ClientExchange_Rfc7677Vector_ProducesTheRfcProofAndAcceptsTheRfcSignature()
    {
        var client = new ScramClientExchange("pencil", ClientNonce);
        Assert.Equal("n,,n=,r=" + ClientNonce, client.CreateClientFirst());
        // The RFC's messages carry n=user; PostgreSQL sends an empty name. The proof covers the
        // client-first-bare, so check against a server exchange using the same verifier instead.
        var verifier = ScramVerifier.FromPassword("pencil", 4096, RfcSalt);
        var server = new ScramServerExchange(verifier, ServerNonceSuffix);
        var serverFirst = server.HandleClientFirst("n,,n=,r=" + ClientNonce);
        Assert.Equal($"r={ClientNonce}{ServerNonceSuffix},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", serverFirst);
        var clientFinal = client.HandleServerFirst(serverFirst);
        var serverFinal = server.HandleClientFinal(clientFinal);
        Assert.NotNull(serverFinal);
        Assert.True(client.VerifyServerFinal(serverFinal));
    }

    [Fact]
    public void ServerExchange_Rfc7677ClientFinal_VerifiesAndSignsLikeTheRfc()
    {
        var verifier = ScramVerifier.FromPassword("pencil", 4096, RfcSalt);
        var server = new ScramServerExchange(verifier, ServerNonceSuffix);
        server.HandleClientFirst("n,,n=user,r=" + ClientNonce);
        var final = server.HandleClientFinal($"c=biws,r={ClientNonce}{ServerNonceSuffix},p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=");
        Assert.Equal("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=", final);
    }

    [Fact]
    public void ServerExchange_WrongPassword_ReturnsNull()
    {
        var server = new ScramServerExchange(ScramVerifier.FromPassword("right"));
        var client = new ScramClientExchange("wrong");
        var serverFirst = server.HandleClientFirst(client.CreateClientFirst());
        Assert.Null(server.HandleClientFinal(client.HandleServerFirst(serverFirst)));
    }

    [Fact]
    public void ServerExchange_TamperedNonce_ReturnsNull()
    {
        var server = new ScramServerExchange(ScramVerifier.FromPassword("pw"));
        var client = new ScramClientExchange("pw");
        var serverFirst = server.HandleClientFirst(client.CreateClientFirst());
        var final = client.HandleServerFirst(serverFirst).Replace("r=", "r=x", StringComparison.Ordinal);
        Assert.Null(server.HandleClientFinal(final));
    }

    [Theory]
    [InlineData("p=tls-server-end-point,,n=,r=abc")]
    [InlineData("x,,n=,r=abc")]
    [InlineData("n,,n=")]
    [InlineData("garbage")]
    public void ServerExchange_MalformedOrChannelBindingClientFirst_Throws(string clientFirst) =>
        Assert.Throws<FormatException>(() => new ScramServerExchange(ScramVerifier.FromPassword("pw")).HandleClientFirst(clientFirst));

    [Fact]
    public void ClientExchange_ServerNonceNotExtendingOurs_Throws()
    {
        var client = new ScramClientExchange("pw", "abc");
        client.CreateClientFirst();
        Assert.Throws<FormatException>(() => client.HandleServerFirst("r=zzz,s=" + Convert.ToBase64String(Encoding.UTF8.GetBytes("salt")) + ",i=4096"));
    }

    [Fact]
    public void Verifier_ToStringAndTryParse_RoundTripInPostgresFormat()
    {
        var verifier = ScramVerifier.FromPassword("pw", 4096, Enumerable.Range(0, 16).Select(i => (byte)i).ToArray());
        var text = verifier.ToString();
        Assert.StartsWith("SCRAM-SHA-256$4096:AAECAwQFBgcICQoLDA0ODw==$", text);
        Assert.True(ScramVerifier.TryParse(text, out var parsed));
        Assert.Equal(verifier.StoredKey, parsed!.StoredKey);
        Assert.Equal(verifier.ServerKey, parsed.ServerKey);
    }

    [Theory]
    [InlineData("md5abc")]
    [InlineData("SCRAM-SHA-256$x:c2FsdA==$a:b")]
    [InlineData("SCRAM-SHA-256$4096:c2FsdA==$notbase64!:b")]
    [InlineData("SCRAM-SHA-256$4096:c2FsdA==")]
    public void Verifier_TryParse_RejectsMalformed(string text) => Assert.False(ScramVerifier.TryParse(text, out _));

    [Fact]
    public void Md5_HashMatchesPostgres()
    {
        // SELECT 'md5' || md5('postgres' || 'postgres') in PostgreSQL.
        Assert.Equal("md53175bce1d3201d16594cebf9d7eb3f9d", Md5Password.Hash("postgres", "postgres"));
        Assert.True(Md5Password.IsHash("md53175bce1d3201d16594cebf9d7eb3f9d"));
        Assert.False(Md5Password.IsHash("md5XYZ"));
    }

    [Fact]
    public void Md5_VerifyAcceptsOnlyTheSaltedResponse()
    {
        var stored = Md5Password.Hash("alice", "secret");
        byte[] salt = [1, 2, 3, 4];
        var response = Md5Password.Response(stored, salt);
        Assert.True(Md5Password.Verify(stored, salt, response));
        Assert.False(Md5Password.Verify(stored, [4, 3, 2, 1], response));
        Assert.False(Md5Password.Verify(Md5Password.Hash("alice", "other"), salt, response));
    }
}
