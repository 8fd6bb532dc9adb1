//! Channels end to end: the same protocol in memory and over mutual TLS, refused identities, and
//! every kind of bad frame giving a typed error within the timeout.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tessera_net::frame::{FrameError, FrameHeader};
use tessera_net::tls::{Identity, TlsServer, connect};
use tessera_net::{Channel, MessageKind, NetError, SessionId, certs};
use tokio::net::TcpListener;

const REQUEST: MessageKind = MessageKind(10);
const REPLY: MessageKind = MessageKind(11);
const TIMEOUT: Duration = Duration::from_millis(500);
const MAX: u32 = 1 << 20;

/// One request/reply exchange: the payload comes back with every byte incremented.
async fn ping_pong(mut client: Channel, mut server: Channel) -> (Channel, Channel) {
    let session = SessionId::random();
    let payload: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
    let serve = async {
        let (h, p) = server.recv_any().await.unwrap();
        assert_eq!((h.kind, h.layer, h.session), (REQUEST, 3, session));
        let reply: Vec<u8> = p.iter().map(|b| b.wrapping_add(1)).collect();
        server.send(REPLY, h.session, 3, &reply).await.unwrap();
    };
    let ask = async {
        client.send(REQUEST, session, 3, &payload).await.unwrap();
        client.recv(REPLY, session, 3).await.unwrap()
    };
    let ((), reply) = tokio::join!(serve, ask);
    assert_eq!(reply, payload.iter().map(|b| b.wrapping_add(1)).collect::<Vec<_>>());
    (client, server)
}

fn cluster() -> (String, Vec<certs::PartyPem>) {
    use certs::KeyUse::{Both, Client, Server};
    certs::dev_cluster("test", &[("server", Server), ("user", Client), ("other", Both)]).unwrap()
}

fn identity(ca: &str, p: &certs::PartyPem) -> Identity {
    Identity::from_pem(&p.name, ca, &p.cert, &p.key).unwrap()
}

async fn listener() -> (TcpListener, String) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    (l, addr)
}

#[tokio::test]
async fn same_protocol_in_memory_and_over_tls() {
    let (a, b) = Channel::pair("user", "server", TIMEOUT, MAX);
    let (client, _) = ping_pong(a, b).await;
    let m = client.meter();
    assert_eq!((m.messages_sent, m.messages_received, m.rounds), (1, 1, 1));
    assert_eq!((m.bytes_sent, m.bytes_received), (5030, 5030));

    let (ca, parties) = cluster();
    let server = TlsServer::new(&identity(&ca, &parties[0]), TIMEOUT, MAX).unwrap();
    let (l, addr) = listener().await;
    let accept = async {
        let (tcp, _) = l.accept().await.unwrap();
        server.accept(tcp, &["user".to_string()]).await.unwrap()
    };
    let user = identity(&ca, &parties[1]);
    let (s, c) = tokio::join!(accept, connect(&user, &addr, "server", TIMEOUT, MAX));
    let (s, c) = (s, c.unwrap());
    assert_eq!((s.peer(), c.peer()), ("user", "server"));
    let (client, server) = ping_pong(c, s).await;
    assert_eq!(client.meter().rounds, 1, "the hello is not a round trip; the exchange is");
    client.close().await;
    server.close().await;
}

/// Runs a handshake where the server expects `expected` and the client uses `client`; returns
/// both sides' results.
async fn handshake(
    client: Identity,
    server_id: Identity,
    expected: &str,
    peer_name: &str,
) -> (Result<Channel, NetError>, Result<Channel, NetError>) {
    let server = Arc::new(TlsServer::new(&server_id, TIMEOUT, MAX).unwrap());
    let (l, addr) = listener().await;
    let expected = vec![expected.to_string()];
    let accept = async {
        let (tcp, _) = l.accept().await.unwrap();
        server.accept(tcp, &expected).await
    };
    let (s, c) = tokio::join!(accept, connect(&client, &addr, peer_name, TIMEOUT, MAX));
    (s, c)
}

#[tokio::test]
async fn wrong_identities_are_refused_on_both_sides() {
    let (ca, parties) = cluster();
    let (other_ca, strangers) = certs::dev_cluster("elsewhere", &[("user", certs::KeyUse::Client)]).unwrap();
    // A certificate from another CA.
    let (s, c) = handshake(identity(&other_ca, &strangers[0]), identity(&ca, &parties[0]), "user", "server").await;
    assert!(matches!(s, Err(NetError::Tls { .. })), "{s:?}");
    assert!(matches!(c, Err(NetError::Tls { .. })), "{c:?}");
    // A valid certificate for another party's role.
    let (s, c) = handshake(identity(&ca, &parties[2]), identity(&ca, &parties[0]), "user", "server").await;
    assert!(matches!(s, Err(NetError::UnexpectedParty { .. })), "{s:?}");
    assert!(matches!(c, Err(NetError::Tls { .. })), "{c:?}");
    // A user's certificate serves no one: it is for TLS clients only.
    let (s, c) = handshake(identity(&ca, &parties[2]), identity(&ca, &parties[1]), "other", "user").await;
    assert!(
        matches!(c, Err(NetError::Tls { ref reason, .. }) if reason.contains("extended key usage for server authentication")),
        "{c:?}"
    );
    assert!(s.is_err());
    // A server's certificate connects to no one: it is for TLS servers only.
    let (s, c) = handshake(identity(&ca, &parties[0]), identity(&ca, &parties[2]), "server", "other").await;
    assert!(matches!(s, Err(NetError::Tls { .. })), "{s:?}");
    assert!(c.is_err());
    // A server that is not the party we meant to reach.
    let (s, c) = handshake(identity(&ca, &parties[1]), identity(&ca, &parties[2]), "user", "server").await;
    assert!(matches!(c, Err(NetError::Tls { .. })), "{c:?}");
    assert!(s.is_err());
    // No client certificate at all.
    let server = TlsServer::new(&identity(&ca, &parties[0]), TIMEOUT, MAX).unwrap();
    let (l, addr) = listener().await;
    let accept = async {
        let (tcp, _) = l.accept().await.unwrap();
        server.accept(tcp, &["user".to_string()]).await
    };
    let anonymous = async {
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pemfile::certs(&mut ca.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("server").unwrap();
        let stream = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.unwrap();
        let mut ch = Channel::new("server", stream, TIMEOUT, MAX);
        ch.recv(tessera_net::tls::HELLO, SessionId([0; 16]), 0).await
    };
    let (s, c) = tokio::join!(accept, anonymous);
    assert!(matches!(s, Err(NetError::Tls { .. })), "{s:?}");
    assert!(c.is_err(), "an anonymous client is never greeted");
    // Unreadable credentials.
    assert!(matches!(
        Identity::from_pem("x", "not pem", &parties[0].cert, &parties[0].key),
        Err(NetError::Certificate(_))
    ));
    assert!(matches!(Identity::from_pem("x", &ca, "", &parties[0].key), Err(NetError::Certificate(_))));
    assert!(matches!(Identity::from_pem("x", &ca, &parties[0].cert, "junk"), Err(NetError::Certificate(_))));
}

fn header(kind: u16, session: SessionId, layer: u32, len: u32) -> [u8; 30] {
    FrameHeader { kind: MessageKind(kind), layer, session, len }.encode()
}

/// Sends `bytes` raw (then closes if `close`), and returns what the receiver makes of them.
async fn receive_after(bytes: Vec<u8>, close: bool, session: SessionId) -> (NetError, Duration) {
    let (mut bad, mut good) = Channel::pair("a", "b", TIMEOUT, 1000);
    bad.send_raw_for_tests(&bytes).await.unwrap();
    let keep = if close {
        drop(bad);
        None
    } else {
        Some(bad)
    };
    let start = Instant::now();
    let err = good.recv(REQUEST, session, 1).await.unwrap_err();
    drop(keep);
    (err, start.elapsed())
}

#[tokio::test]
async fn bad_frames_give_typed_errors_within_the_timeout() {
    let s = SessionId::random();
    let mut truncated = header(10, s, 1, 100).to_vec();
    truncated.extend_from_slice(&[0; 10]);
    let (e, _) = receive_after(truncated, true, s).await;
    assert_eq!(e, NetError::Malformed { peer: "a".into(), error: FrameError::Truncated { missing: 90 } });
    let (e, _) = receive_after(header(10, s, 1, 5000).to_vec(), false, s).await;
    assert_eq!(e, NetError::Malformed { peer: "a".into(), error: FrameError::Oversized { len: 5000, max: 1000 } });
    let (e, _) = receive_after(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n....".to_vec(), false, s).await;
    assert!(matches!(e, NetError::Malformed { error: FrameError::BadMagic(_), .. }), "{e}");
    let mut v2 = header(10, s, 1, 0);
    v2[2] = 2;
    let (e, _) = receive_after(v2.to_vec(), false, s).await;
    assert!(matches!(e, NetError::Malformed { error: FrameError::WrongVersion { got: 2 }, .. }), "{e}");
    let (e, _) = receive_after(header(10, SessionId::random(), 1, 0).to_vec(), false, s).await;
    assert!(matches!(e, NetError::WrongSession { .. }), "{e}");
    let (e, _) = receive_after(header(11, s, 1, 0).to_vec(), false, s).await;
    assert!(matches!(e, NetError::UnexpectedKind { expected: REQUEST, got: REPLY, .. }), "{e}");
    let (e, _) = receive_after(header(10, s, 2, 0).to_vec(), false, s).await;
    assert!(matches!(e, NetError::WrongLayer { expected: 1, got: 2, .. }), "{e}");
    // Half a header, then the peer is killed.
    let (e, _) = receive_after(header(10, s, 1, 0)[..7].to_vec(), true, s).await;
    assert!(matches!(e, NetError::Malformed { error: FrameError::Truncated { missing: 23 }, .. }), "{e}");
    // Nothing at all, then the peer is killed: a closed peer, named.
    let (e, _) = receive_after(vec![], true, s).await;
    assert_eq!(e, NetError::PeerClosed { peer: "a".into(), step: REQUEST });
    // A silent peer: a timeout, not a hang.
    let (e, waited) = receive_after(vec![], false, s).await;
    assert!(matches!(e, NetError::Timeout { .. }), "{e}");
    assert!(waited >= TIMEOUT && waited < TIMEOUT * 3, "{waited:?}");
    // A replayed frame is refused as out of order.
    let (mut a, mut b) = Channel::pair("a", "b", TIMEOUT, 1000);
    a.send(REQUEST, s, 1, b"x").await.unwrap();
    a.send(REQUEST, s, 1, b"x").await.unwrap();
    b.recv(REQUEST, s, 1).await.unwrap();
    assert!(matches!(b.recv(REPLY, s, 1).await, Err(NetError::UnexpectedKind { .. })));
    // Sending more than the maximum is refused locally.
    assert!(matches!(
        a.send(REQUEST, s, 1, &[0; 1001]).await,
        Err(NetError::Malformed { error: FrameError::Oversized { .. }, .. })
    ));
}

/// A tapped end records every frame it receives, by `recv`, `recv_any` and `exchange` alike, and
/// nothing it sends.
#[tokio::test]
async fn a_tap_records_every_received_frame() {
    let (mut a, mut b) = Channel::pair("a", "b", TIMEOUT, MAX);
    let tap = tessera_net::Wiretap::new();
    a.tap(tap.clone());
    let s = SessionId::random();
    b.send(REQUEST, s, 1, b"one").await.unwrap();
    a.recv(REQUEST, s, 1).await.unwrap();
    b.send(REQUEST, s, 2, b"two").await.unwrap();
    a.recv_any().await.unwrap();
    let (x, y) = tokio::join!(a.exchange(REPLY, s, 3, b"mine"), b.exchange(REPLY, s, 3, b"three"));
    assert_eq!((x.unwrap(), y.unwrap()), (b"three".to_vec(), b"mine".to_vec()));
    let seen: Vec<(u32, Vec<u8>)> = tap.frames().into_iter().map(|f| (f.header.layer, f.payload)).collect();
    assert_eq!(seen, [(1, b"one".to_vec()), (2, b"two".to_vec()), (3, b"three".to_vec())]);
    assert!(tap.frames().iter().all(|f| f.from == "b"));
}

/// A server's admission rules refuse a frame on its header (its kind's limit, a session the
/// peer already used) and tell the peer why; frames within the rules pass.
#[tokio::test]
async fn admission_refuses_at_the_header_and_tells_the_peer() {
    use tessera_net::admission::{Admission, FrameBudget, FrameLimits, SessionLog};
    let rules = Arc::new(Admission {
        limits: FrameLimits::new(0).with(REQUEST, 100),
        budget: FrameBudget::new(1000),
        sessions: SessionLog::new(16),
    });
    let session = SessionId([1; 16]);
    let (mut server, mut peer) = Channel::pair("server", "peer", TIMEOUT, MAX);
    server.admit(rules.clone());
    peer.send(REQUEST, session, 0, &[0; 100]).await.unwrap();
    assert_eq!(server.recv(REQUEST, session, 0).await.unwrap().len(), 100);
    // A kind the server never receives, declaring a megabyte it never sends.
    let header = FrameHeader { kind: REPLY, layer: 0, session, len: MAX };
    peer.send_raw_for_tests(&header.encode()).await.unwrap();
    let refused = server.recv(REPLY, session, 0).await.unwrap_err();
    let reason = "peer peer: malformed frame: payload of 1048576 bytes for message kind 11, above its maximum of 0";
    assert_eq!(refused.to_string(), reason);
    let told = peer.recv(REQUEST, session, 0).await.unwrap_err();
    assert_eq!(told, NetError::Aborted { peer: "server".into(), step: REQUEST, reason: reason.into() });
    // The same session again, on a new connection from the same peer.
    let (mut server, mut peer) = Channel::pair("server", "peer", TIMEOUT, MAX);
    server.admit(rules);
    peer.send(REQUEST, session, 0, &[0; 10]).await.unwrap();
    let replayed = server.recv(REQUEST, session, 0).await.unwrap_err();
    assert_eq!(replayed, NetError::Replayed { peer: "peer".into(), kind: REQUEST });
    assert!(matches!(peer.recv(REQUEST, session, 0).await, Err(NetError::Aborted { .. })));
}
