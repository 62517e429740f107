using System.IO.Pipelines;
using System.Net;
using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Http.Features;
using MProxy.Edge.Configuration;

namespace MProxy.Edge.Networking;

/// <summary>
/// A connection after its TLS handshake — a client's (the edge as server) or a server's (the edge
/// as client): the session or pump reads and writes cleartext through <see cref="Input"/> and
/// <see cref="Output"/>, which an <see cref="SslStream"/> encrypts onto the connection's own pipes.
/// Only connections that use TLS pay for the extra layer.
/// </summary>
internal sealed class TlsTransport : IDuplexPipe, IAsyncDisposable
{
    private readonly SslStream _stream;

    private TlsTransport(SslStream stream)
    {
        _stream = stream;
        Input = PipeReader.Create(stream, new StreamPipeReaderOptions(leaveOpen: true));
        Output = PipeWriter.Create(stream, new StreamPipeWriterOptions(leaveOpen: true));
    }

    public PipeReader Input { get; }

    public PipeWriter Output { get; }

    /// <summary>What was negotiated, e.g. <c>Tls13 TLS_AES_256_GCM_SHA384</c> (for the admin console and logs).</summary>
    public string Description => $"{_stream.SslProtocol} {_stream.NegotiatedCipherSuite}";

    /// <summary>Runs the server side of the handshake over <paramref name="plain"/> with <paramref name="tls"/>'s certificate.</summary>
    /// <exception cref="System.Security.Authentication.AuthenticationException">the handshake failed.</exception>
    public static async Task<TlsTransport> AcceptAsync(IDuplexPipe plain, TlsConfig tls, CancellationToken cancellationToken)
    {
        var stream = new SslStream(new DuplexPipeStream(plain), leaveInnerStreamOpen: false);
        try
        {
            await stream.AuthenticateAsServerAsync(tls.ServerOptions(), cancellationToken);
        }
        catch
        {
            await stream.DisposeAsync();
            throw;
        }
        return new TlsTransport(stream);
    }

    /// <summary>
    /// Runs the client side of the handshake with the server at <paramref name="host"/>: the
    /// certificate is not checked for <see cref="ServerTlsMode.Prefer"/> and
    /// <see cref="ServerTlsMode.Require"/>; for <see cref="ServerTlsMode.VerifyFull"/> it must chain
    /// to the configured roots (or the system's) and name <paramref name="host"/>.
    /// </summary>
    /// <exception cref="System.Security.Authentication.AuthenticationException">the handshake or the certificate check failed.</exception>
    public static async Task<TlsTransport> ConnectAsync(IDuplexPipe plain, string host, ServerTlsConfig tls, CancellationToken cancellationToken)
    {
        var options = new SslClientAuthenticationOptions
        {
            TargetHost = host,
            CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
        };
        if (tls.Mode != ServerTlsMode.VerifyFull)
        {
            options.RemoteCertificateValidationCallback = static (_, _, _, _) => true;
        }
        else if (tls.Roots is { } roots)
        {
            var policy = new X509ChainPolicy { TrustMode = X509ChainTrustMode.CustomRootTrust, RevocationMode = X509RevocationMode.NoCheck };
            policy.CustomTrustStore.AddRange(roots);
            options.CertificateChainPolicy = policy;
        }
        var stream = new SslStream(new DuplexPipeStream(plain), leaveInnerStreamOpen: false);
        try
        {
            await stream.AuthenticateAsClientAsync(options, cancellationToken);
        }
        catch
        {
            await stream.DisposeAsync();
            throw;
        }
        return new TlsTransport(stream);
    }

    /// <summary>
    /// Releases the TLS session. The cleartext pipes are not completed here: the pump or the session
    /// on another thread may still be in a read or a flush on them, which closing the socket (the
    /// connection's own disposal) ends with an error they handle.
    /// </summary>
    public async ValueTask DisposeAsync()
    {
        try
        {
            await _stream.DisposeAsync();
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException or InvalidOperationException)
        {
            // the connection is already gone
        }
    }

    /// <summary>The connection's pipes as the one stream <see cref="SslStream"/> wraps.</summary>
    private sealed class DuplexPipeStream(IDuplexPipe pipe) : Stream
    {
        private readonly Stream _read = pipe.Input.AsStream(leaveOpen: true);
        private readonly Stream _write = pipe.Output.AsStream(leaveOpen: true);

        public override bool CanRead => true;
        public override bool CanWrite => true;
        public override bool CanSeek => false;
        public override long Length => throw new NotSupportedException();

        public override long Position
        {
            get => throw new NotSupportedException();
            set => throw new NotSupportedException();
        }

        public override int Read(byte[] buffer, int offset, int count) => _read.Read(buffer, offset, count);

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) =>
            _read.ReadAsync(buffer, cancellationToken);

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            _read.ReadAsync(buffer, offset, count, cancellationToken);

        public override void Write(byte[] buffer, int offset, int count) => _write.Write(buffer, offset, count);

        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default) =>
            _write.WriteAsync(buffer, cancellationToken);

        public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            _write.WriteAsync(buffer, offset, count, cancellationToken);

        public override void Flush() => _write.Flush();

        public override Task FlushAsync(CancellationToken cancellationToken) => _write.FlushAsync(cancellationToken);

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();
    }
}

/// <summary>
/// A connection whose traffic goes through <see cref="TlsTransport"/>: what the pool and the pump see
/// of a server reached over TLS.
/// </summary>
internal sealed class TlsConnection(ConnectionContext inner, TlsTransport tls) : ConnectionContext
{
    public override IDuplexPipe Transport
    {
        get => tls;
        set => throw new NotSupportedException("the transport of a TLS connection is fixed");
    }

    public override string ConnectionId
    {
        get => inner.ConnectionId;
        set => inner.ConnectionId = value;
    }

    public override IFeatureCollection Features => inner.Features;

    public override IDictionary<object, object?> Items
    {
        get => inner.Items;
        set => inner.Items = value;
    }

    public override EndPoint? LocalEndPoint
    {
        get => inner.LocalEndPoint;
        set => inner.LocalEndPoint = value;
    }

    public override EndPoint? RemoteEndPoint
    {
        get => inner.RemoteEndPoint;
        set => inner.RemoteEndPoint = value;
    }

    public override CancellationToken ConnectionClosed
    {
        get => inner.ConnectionClosed;
        set => inner.ConnectionClosed = value;
    }

    public override void Abort(ConnectionAbortedException abortReason) => inner.Abort(abortReason);

    /// <summary>Closes the socket first (a pending read on the TLS layer then ends), then the TLS session.</summary>
    public override async ValueTask DisposeAsync()
    {
        await inner.DisposeAsync();
        await tls.DisposeAsync();
    }
}
