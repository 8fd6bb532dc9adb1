//! Mutually authenticated TLS 1.3 (rustls with the `ring` provider): every party presents a
//! certificate from the cluster CA, and its identity is the party name the certificate is valid
//! for. After the handshake the server names itself in a hello frame, so a refused client learns
//! of the refusal from `connect`, not later.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::io::{AsyncRead, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::channel::{Channel, stream_error};
use crate::error::{KeyFileProblem, NetError, Result};
use crate::frame::{MessageKind, SessionId};
use crate::poll::BusyPoll;

/// The frame a server sends once it accepted a client: its own party name.
pub const HELLO: MessageKind = MessageKind(0);

/// One party's credentials: the cluster CA, its certificate chain and its private key (wiped
/// on drop), and the client configuration every connection it opens shares.
pub struct Identity {
    name: String,
    roots: Arc<RootCertStore>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    client: Arc<ClientConfig>,
}

impl Drop for Identity {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.key.zeroize();
    }
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity").field("name", &self.name).finish_non_exhaustive()
    }
}

/// ring's TLS 1.3 suites with AES-128-GCM first: 128-bit security, and the cheapest of them per
/// byte on CPUs with AES instructions (the parties move megabytes per layer).
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    use rustls::crypto::ring::cipher_suite::{
        TLS13_AES_128_GCM_SHA256, TLS13_AES_256_GCM_SHA384, TLS13_CHACHA20_POLY1305_SHA256,
    };
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites = vec![TLS13_AES_128_GCM_SHA256, TLS13_AES_256_GCM_SHA384, TLS13_CHACHA20_POLY1305_SHA256];
    Arc::new(provider)
}

impl Identity {
    /// Credentials from PEM text.
    pub fn from_pem(name: &str, ca_pem: &str, cert_pem: &str, key_pem: &str) -> Result<Self> {
        let bad = |what: &str, e: String| NetError::Certificate(format!("{what}: {e}"));
        let mut roots = RootCertStore::empty();
        for ca in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
            roots
                .add(ca.map_err(|e| bad("CA certificate", e.to_string()))?)
                .map_err(|e| bad("CA certificate", e.to_string()))?;
        }
        if roots.is_empty() {
            return Err(NetError::Certificate("no CA certificate in the CA file".into()));
        }
        let chain = rustls_pemfile::certs(&mut cert_pem.as_bytes())
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| bad("certificate", e.to_string()))?;
        if chain.is_empty() {
            return Err(NetError::Certificate(format!("no certificate for {name}")));
        }
        let key = rustls_pemfile::private_key(&mut key_pem.as_bytes())
            .map_err(|e| bad("private key", e.to_string()))?
            .ok_or_else(|| NetError::Certificate(format!("no private key for {name}")))?;
        let roots = Arc::new(roots);
        let client = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| bad("client configuration", e.to_string()))?
            .with_root_certificates(roots.clone())
            .with_client_auth_cert(chain.clone(), key.clone_key())
            .map_err(|e| bad("client configuration", e.to_string()))?;
        Ok(Self { name: name.to_string(), roots, chain, key, client: Arc::new(client) })
    }

    /// Credentials from PEM files (the key's text is wiped once parsed).
    pub fn from_files(name: &str, ca: &std::path::Path, cert: &std::path::Path, key: &std::path::Path) -> Result<Self> {
        let read = |p: &std::path::Path| {
            std::fs::read_to_string(p)
                .map(zeroize::Zeroizing::new)
                .map_err(|e| NetError::Certificate(format!("{}: {e}", p.display())))
        };
        Self::from_pem(name, &read(ca)?, &read(cert)?, &read_key(key)?)
    }

    /// This party's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Reads a private key file, refusing (on Unix) one that is a symbolic link or that group or
/// others may read or write.
fn read_key(path: &std::path::Path) -> Result<zeroize::Zeroizing<String>> {
    let io = |e: std::io::Error| NetError::Certificate(format!("{}: {e}", path.display()));
    #[cfg(unix)]
    {
        use std::io::Read;
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let refuse = |problem| NetError::KeyFile { path: path.display().to_string(), problem };
        let link = std::fs::symlink_metadata(path).map_err(io)?;
        if link.file_type().is_symlink() {
            return Err(refuse(KeyFileProblem::Symlink));
        }
        let mode = link.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(refuse(KeyFileProblem::Loose { mode }));
        }
        let mut file = std::fs::File::open(path).map_err(io)?;
        // The file opened must be the one checked, not a link planted meanwhile.
        let opened = file.metadata().map_err(io)?;
        if (opened.dev(), opened.ino()) != (link.dev(), link.ino()) {
            return Err(refuse(KeyFileProblem::Replaced));
        }
        let mut text = zeroize::Zeroizing::new(String::new());
        file.read_to_string(&mut text).map_err(io)?;
        Ok(text)
    }
    #[cfg(not(unix))]
    std::fs::read_to_string(path).map(zeroize::Zeroizing::new).map_err(io)
}

/// Accepts authenticated parties on one side of a cluster.
pub struct TlsServer {
    name: String,
    acceptor: TlsAcceptor,
    timeout: Duration,
    max_payload: u32,
}

impl TlsServer {
    /// A server presenting `identity`, requiring client certificates from the same CA.
    pub fn new(identity: &Identity, timeout: Duration, max_payload: u32) -> Result<Self> {
        let tls = |e: rustls::Error| NetError::Certificate(e.to_string());
        let verifier = WebPkiClientVerifier::builder_with_provider(identity.roots.clone(), provider())
            .build()
            .map_err(|e| NetError::Certificate(e.to_string()))?;
        let config = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(tls)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(identity.chain.clone(), identity.key.clone_key())
            .map_err(tls)?;
        Ok(Self { name: identity.name.clone(), acceptor: TlsAcceptor::from(Arc::new(config)), timeout, max_payload })
    }

    /// Runs the handshake on an accepted TCP stream and returns a channel to the client, which
    /// must authenticate as one of `expected`.
    pub async fn accept(&self, tcp: TcpStream, expected: &[String]) -> Result<Channel> {
        let addr = tcp.peer_addr().map(|a| a.to_string()).unwrap_or_else(|_| "unknown".into());
        let tls_err = |reason: String| NetError::Tls { peer: addr.clone(), reason };
        // Small protocol messages must not wait for delayed ACKs.
        tcp.set_nodelay(true).map_err(|e| NetError::Io { peer: addr.clone(), reason: e.to_string() })?;
        let mut stream =
            tokio::time::timeout(self.timeout, self.acceptor.accept(buffered(SERVER_READ_BUFFER, BusyPoll::new(tcp))))
                .await
                .map_err(|_| tls_err(format!("handshake not finished within {:?}", self.timeout)))?
                .map_err(|e| stream_error(&addr, HELLO, e))?;
        let cert = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .ok_or_else(|| tls_err("no client certificate".into()))?;
        let ee = webpki::EndEntityCert::try_from(cert).map_err(|e| tls_err(e.to_string()))?;
        let name = expected
            .iter()
            .find(|n| ServerName::try_from(n.as_str()).is_ok_and(|sn| ee.verify_is_valid_for_subject_name(&sn).is_ok()))
            .cloned();
        let refused = name.is_none();
        stream.get_mut().1.set_buffer_limit(Some(SEND_BUFFER));
        if !refused {
            stream.get_mut().0.get_mut().enable();
        }
        let mut channel = Channel::new(name.unwrap_or(addr), stream, self.timeout, self.max_payload);
        if refused {
            // Tell the client why instead of just closing, so it can tell a refusal from a crash.
            let error = NetError::UnexpectedParty { expected: expected.to_vec() };
            channel.abort(SessionId([0; 16]), &error.to_string()).await;
            channel.close().await;
            return Err(error);
        }
        channel.send(HELLO, SessionId([0; 16]), 0, self.name.as_bytes()).await?;
        Ok(channel)
    }
}

/// Plaintext a TLS session encrypts ahead of the socket: a frame of up to this size leaves in
/// one system call (rustls's default, 64 KiB, split every ResNet-20 first-stage layer in two).
const SEND_BUFFER: usize = 1 << 20;

/// Bytes a server reads from a socket per system call at most (allocated for every connection
/// it accepts, before the peer authenticates).
const SERVER_READ_BUFFER: usize = 64 << 10;
/// Bytes a client reads from a socket per system call at most: a whole layer's product of the
/// larger models in one call.
const CLIENT_READ_BUFFER: usize = 256 << 10;

/// The socket under a TLS session, read through a buffer of `capacity` bytes: rustls asks for
/// 4 KiB at a time, which would be a system call per 4 KiB of a product or ciphertext (16 for a
/// 64 KiB layer).
fn buffered<S: AsyncRead>(capacity: usize, socket: S) -> BufReader<S> {
    BufReader::with_capacity(capacity, socket)
}

/// Connects to party `peer` at `addr` as `identity`; the server must present a certificate for
/// `peer` from the cluster CA and accept ours.
pub async fn connect(
    identity: &Identity,
    addr: &str,
    peer: &str,
    timeout: Duration,
    max_payload: u32,
) -> Result<Channel> {
    let tls_err = |reason: String| NetError::Tls { peer: peer.to_string(), reason };
    let server_name = ServerName::try_from(peer.to_string()).map_err(|e| tls_err(e.to_string()))?;
    let handshake = async {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| NetError::Io { peer: peer.to_string(), reason: e.to_string() })?;
        tcp.set_nodelay(true).map_err(|e| NetError::Io { peer: peer.to_string(), reason: e.to_string() })?;
        TlsConnector::from(identity.client.clone())
            .connect(server_name, buffered(CLIENT_READ_BUFFER, tcp))
            .await
            .map_err(|e| stream_error(peer, HELLO, e))
    };
    let mut stream = tokio::time::timeout(timeout, handshake)
        .await
        .map_err(|_| tls_err(format!("handshake not finished within {timeout:?}")))??;
    stream.get_mut().1.set_buffer_limit(Some(SEND_BUFFER));
    let mut channel = Channel::new(peer, stream, timeout, max_payload);
    // The server refuses a client it cannot authenticate with a TLS alert (which the channel
    // reports as a TLS error), and an authenticated party it does not expect with an abort frame
    // instead of the greeting. A connection that just ends is a server that went away: that
    // stays the peer's fault.
    let hello = channel.recv(HELLO, SessionId([0; 16]), 0).await.map_err(|e| match e {
        NetError::Aborted { reason, .. } => tls_err(format!("refused by the server: {reason}")),
        other => other,
    })?;
    if hello != peer.as_bytes() {
        return Err(tls_err(format!("greeted as `{}`", String::from_utf8_lossy(&hello))));
    }
    Ok(channel)
}
