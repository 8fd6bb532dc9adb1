//! End to end: both roles over real channels (in memory and mutual TLS), what crosses the
//! wire, and malformed or truncated messages.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use tessera_gc::protocol::{EvaluatorAwaitBase, GarblerAwaitBase};
use tessera_gc::{
    GcError, Layer, MAX_FRAME, Message, Modulus, Nonlinear, driver, evaluator_offline, evaluator_online,
    garbler_offline, garbler_online,
};
use tessera_net::tls::{Identity, TlsServer, connect};
use tessera_net::{Channel, NetError, SessionId, certs};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TIMEOUT: Duration = Duration::from_secs(60);

/// Random shares for a layer, and the plaintext function of each instance, `f(a + b)`.
struct Case {
    a: Vec<u64>,
    b: Vec<u64>,
    f: Vec<u64>,
}

fn case(layer: &Layer, rng: &mut ChaCha20Rng) -> Case {
    let z = layer.circuit();
    let m = z.modulus();
    let a: Vec<u64> = (0..layer.values()).map(|_| m.random(rng)).collect();
    let b: Vec<u64> = (0..layer.values()).map(|_| m.random(rng)).collect();
    let k = z.values();
    let f = (0..layer.instances())
        .map(|i| {
            let x: Vec<u64> = (0..k).map(|j| m.add(a[i * k + j], b[i * k + j])).collect();
            z.reference(&x)
        })
        .collect();
    Case { a, b, f }
}

/// Both parties' output shares of a layer: the evaluator's `f(x) − r` and the garbler's `r`.
struct Outcome {
    out: Vec<u64>,
    r: Vec<u64>,
}

impl Outcome {
    /// How many instances do not satisfy `out + r = f(x)`.
    fn wrong(&self, layer: &Layer, c: &Case) -> usize {
        let m = layer.circuit().modulus();
        assert_eq!((self.out.len(), self.r.len()), (c.f.len(), c.f.len()));
        (0..c.f.len()).filter(|&i| m.add(self.out[i], self.r[i]) != c.f[i]).count()
    }
}

/// Runs one layer, offline then online, with the garbler on `g` and the evaluator on `e`.
async fn run_layer(g: &mut Channel, e: &mut Channel, layer: &Layer, c: &Case, layer_id: u32) -> Outcome {
    let session = SessionId([7; 16]);
    let mut rg = ChaCha20Rng::from_os_rng();
    let mut re = ChaCha20Rng::from_os_rng();
    let (go, eo) = tokio::join!(
        garbler_offline(g, session, layer_id, layer.clone(), &mut rg),
        evaluator_offline(e, session, layer_id, layer.clone(), &mut re),
    );
    let (go, eo) = (go.unwrap(), eo.unwrap());
    let (gr, er) = tokio::join!(
        garbler_online(g, session, layer_id, go, c.b.clone()),
        evaluator_online(e, session, layer_id, eo, &c.a)
    );
    Outcome { out: er.unwrap(), r: gr.unwrap().to_vec() }
}

#[tokio::test]
async fn relu_on_100000_random_shares_is_exact() {
    let layer = Layer::new(Nonlinear::Relu, Modulus::tessera(), 100_000).unwrap();
    let c = case(&layer, &mut ChaCha20Rng::seed_from_u64(1));
    let (mut g, mut e) = Channel::pair("garbler", "evaluator", TIMEOUT, MAX_FRAME);
    let outcome = run_layer(&mut g, &mut e, &layer, &c, 0).await;
    assert_eq!(outcome.wrong(&layer, &c), 0, "every output is exactly ReLU(x) − r");
}

#[tokio::test]
async fn max_pool_and_truncating_relu_layers_in_one_session() {
    let (mut g, mut e) = Channel::pair("garbler", "evaluator", TIMEOUT, MAX_FRAME);
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let m = Modulus::tessera();
    for (id, op) in
        [Nonlinear::MaxPool { window: 4, relu: true, shift: 12 }, Nonlinear::ReluTrunc { shift: 12 }, Nonlinear::Relu]
            .into_iter()
            .enumerate()
    {
        let layer = Layer::new(op, m, 1500).unwrap();
        let c = case(&layer, &mut rng);
        assert_eq!(run_layer(&mut g, &mut e, &layer, &c, id as u32).await.wrong(&layer, &c), 0, "{op:?}");
    }
}

#[tokio::test]
async fn relu_over_mutual_tls() {
    let (ca, parties) =
        certs::dev_cluster("gc-test", &[("garbler", certs::KeyUse::Both), ("evaluator", certs::KeyUse::Both)]).unwrap();
    let id = |p: &certs::PartyPem| Identity::from_pem(&p.name, &ca, &p.cert, &p.key).unwrap();
    let server = TlsServer::new(&id(&parties[0]), TIMEOUT, MAX_FRAME).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let accept = async {
        let (tcp, _) = listener.accept().await.unwrap();
        server.accept(tcp, &["evaluator".to_string()]).await.unwrap()
    };
    let evaluator = id(&parties[1]);
    let (mut g, e) = tokio::join!(accept, connect(&evaluator, &addr, "garbler", TIMEOUT, MAX_FRAME));
    let mut e = e.unwrap();
    let layer = Layer::new(Nonlinear::Relu, Modulus::tessera(), 3000).unwrap();
    let c = case(&layer, &mut ChaCha20Rng::seed_from_u64(3));
    assert_eq!(run_layer(&mut g, &mut e, &layer, &c, 0).await.wrong(&layer, &c), 0);
    assert!(layer.chunks() > 1, "several table and label chunks");
}

/// Copies one direction of a byte stream and keeps a copy of everything that passed.
async fn tap(mut from: impl AsyncReadExt + Unpin, mut to: impl AsyncWriteExt + Unpin, log: Arc<Mutex<Vec<u8>>>) {
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                log.lock().unwrap().extend_from_slice(&buf[..n]);
                if to.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown().await;
}

#[tokio::test]
async fn nothing_secret_crosses_the_channel_in_the_clear() {
    let (g_end, g_tap) = tokio::io::duplex(1 << 20);
    let (e_tap, e_end) = tokio::io::duplex(1 << 20);
    let (g_read, g_write) = tokio::io::split(g_tap);
    let (e_read, e_write) = tokio::io::split(e_tap);
    let (to_e, to_g) = (Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(Vec::new())));
    tokio::spawn(tap(g_read, e_write, to_e.clone()));
    tokio::spawn(tap(e_read, g_write, to_g.clone()));
    let mut g = Channel::new("evaluator", g_end, TIMEOUT, MAX_FRAME);
    let mut e = Channel::new("garbler", e_end, TIMEOUT, MAX_FRAME);
    let m = Modulus::tessera();
    let layer = Layer::new(Nonlinear::Relu, m, 400).unwrap();
    let c = case(&layer, &mut ChaCha20Rng::seed_from_u64(4));
    let outcome = run_layer(&mut g, &mut e, &layer, &c, 0).await;
    assert_eq!(outcome.wrong(&layer, &c), 0);
    let (to_e, to_g) = (to_e.lock().unwrap().clone(), to_g.lock().unwrap().clone());
    let expected = layer.offline_bytes() + layer.online_bytes();
    assert!(to_e.len() + to_g.len() >= expected, "the tap saw every message");
    let contains = |hay: &[u8], needle: [u8; 8]| hay.windows(8).any(|w| w == needle);
    for (i, &o) in outcome.out.iter().enumerate() {
        let x = m.add(c.a[i], c.b[i]);
        for secret in [c.a[i], c.b[i], x, outcome.r[i], o] {
            let bytes = secret.to_le_bytes();
            assert!(
                !contains(&to_e, bytes) && !contains(&to_g, bytes),
                "a share, x, r or the output crossed in the clear"
            );
        }
    }
    // The evaluator's share bits never appear as a packed word either (its OT choices are
    // an independent offline share c, and what it sends online is a − c).
    let bits: Vec<u8> = c.a.iter().flat_map(|v| v.to_le_bytes()).collect();
    assert!(!to_g.windows(16).any(|w| w == &bits[..16]));
}

#[tokio::test]
async fn malformed_truncated_and_missing_messages_are_typed_errors() {
    let m = Modulus::tessera();
    let layer = Layer::new(Nonlinear::Relu, m, 20).unwrap();
    let session = SessionId([1; 16]);
    let mut rng = ChaCha20Rng::seed_from_u64(5);

    // A garbler whose base-OT reply is truncated.
    let (mut g, mut e) = Channel::pair("garbler", "evaluator", Duration::from_secs(2), MAX_FRAME);
    let fake = async {
        let s = g.recv(driver::BASE_SENDER, session, 0).await.unwrap();
        g.send(driver::BASE_RECEIVER, session, 0, &vec![0u8; 32 * 128 - 1]).await.unwrap();
        s
    };
    let mut re = ChaCha20Rng::seed_from_u64(6);
    let (_, res) = tokio::join!(fake, evaluator_offline(&mut e, session, 0, layer.clone(), &mut re));
    assert!(matches!(res, Err(GcError::WrongLength { message: Message::BaseReceiver, .. })), "{res:?}");

    // An evaluator whose base-OT point is not a group element.
    let (mut g, mut e) = Channel::pair("garbler", "evaluator", Duration::from_secs(2), MAX_FRAME);
    let fake = e.send(driver::BASE_SENDER, session, 0, &[0xff; 32]);
    let mut rg = ChaCha20Rng::seed_from_u64(7);
    let (_, res) = tokio::join!(fake, garbler_offline(&mut g, session, 0, layer.clone(), &mut rg));
    assert!(matches!(res, Err(GcError::InvalidPoint { index: 0 })), "{res:?}");

    // A garbler that vanishes mid-protocol.
    let (g, mut e) = Channel::pair("garbler", "evaluator", Duration::from_secs(2), MAX_FRAME);
    drop(g);
    let res = evaluator_offline(&mut e, session, 0, layer.clone(), &mut rng).await;
    assert!(matches!(res, Err(GcError::Net(NetError::PeerClosed { .. }))), "{res:?}");

    // Online: a truncated re-share and one with a value not below t.
    let c = case(&layer, &mut rng);
    for bad in [vec![0u8; 8 * 20 - 1], u64::MAX.to_le_bytes().repeat(20)] {
        let (mut g, mut e) = Channel::pair("garbler", "evaluator", Duration::from_secs(5), MAX_FRAME);
        let mut rg = ChaCha20Rng::seed_from_u64(8);
        let mut re = ChaCha20Rng::seed_from_u64(9);
        let (go, eo) = tokio::join!(
            garbler_offline(&mut g, session, 0, layer.clone(), &mut rg),
            evaluator_offline(&mut e, session, 0, layer.clone(), &mut re),
        );
        let (go, _eo) = (go.unwrap(), eo.unwrap());
        let (_, res) = tokio::join!(
            e.send(driver::RESHARE, session, 0, &bad),
            garbler_online(&mut g, session, 0, go, c.b.clone())
        );
        assert!(
            matches!(
                res,
                Err(GcError::WrongLength { message: Message::Reshare, .. })
                    | Err(GcError::OutOfRange { message: Message::Reshare, .. })
            ),
            "{res:?}"
        );
    }
}

#[test]
fn altered_tables_and_labels_never_panic() {
    let m = Modulus::tessera();
    let layer = Layer::new(Nonlinear::Relu, m, 30).unwrap();
    let c = case(&layer, &mut ChaCha20Rng::seed_from_u64(10));
    let mut rng = ChaCha20Rng::seed_from_u64(11);
    for cut in [None, Some(1usize)] {
        let g = GarblerAwaitBase::start(layer.clone(), &mut rng);
        let (s, e) = EvaluatorAwaitBase::start(layer.clone(), &mut rng);
        let (points, mut g) = g.receive_base(&s, &mut rng).unwrap();
        let mut e = e.receive_base(&points).unwrap();
        for chunk in 0..e.chunks() {
            g.receive_columns(chunk, &e.columns(chunk).unwrap()).unwrap();
        }
        let (chi, g) = g.challenge(&mut rng).unwrap();
        let (proof, mut e) = e.prove(&chi).unwrap();
        let mut g = g.receive_proof(&proof).unwrap();
        let mut tables = g.garble_chunk(0).unwrap();
        if let Some(cut) = cut {
            tables.truncate(tables.len() - cut);
            assert!(matches!(e.receive_tables(0, &tables), Err(GcError::WrongLength { message: Message::Tables, .. })));
            continue;
        }
        // Flip bytes everywhere in the tables: evaluation goes on, the result is garbage or an error.
        for byte in tables.iter_mut().step_by(97) {
            *byte ^= 0x5a;
        }
        e.receive_tables(0, &tables).unwrap();
        let (g, e) = (g.finish().unwrap(), e.finish().unwrap());
        let r = g.output_shares().to_vec();
        let mut g = g.online(c.b.clone()).unwrap();
        let (reshares, mut e) = e.online(&c.a).unwrap();
        let mut labels = g.respond(0, &reshares[0]).unwrap();
        labels[3] ^= 1;
        assert!(matches!(
            e.receive_labels(0, &labels[..labels.len() - 8]),
            Err(GcError::WrongLength { message: Message::Labels, .. })
        ));
        match e.receive_labels(0, &labels) {
            Ok(()) => assert!(Outcome { out: e.finish().unwrap(), r }.wrong(&layer, &c) > 0),
            Err(err) => assert!(matches!(err, GcError::OutOfRange { .. }), "{err:?}"),
        }
    }
}
