//! Random OTs between every two of three parties: one IKNP extension per direction of each
//! pair, set up once per query (128 Chou–Orlandi base OTs each way) and extended per layer.
//!
//! A correlated OT `q_j = t_j ⊕ r_j·Δ` becomes a random OT by hashing: the sender's messages
//! are `H(q_j, j)` and `H(q_j ⊕ Δ, j)`, the receiver's `H(t_j, j)`, with the sender's
//! [`Tccr`] (its key sent with its base-OT reply) and `j` counting the link's OTs over the
//! query, so no tweak repeats under a key. Semi-honest parties: the KOS consistency check of
//! the two-party protocol is not run.

use rand_core::{CryptoRng, RngCore};
use tessera_net::SessionId;
use zeroize::Zeroizing;

use super::{COLUMNS, MESH_BASE, MESH_REPLY, Peers, blame, exchange_both};
use crate::block::{Block, Delta};
use crate::error::{Message, Result};
use crate::hash::{KEY_BYTES, Tccr};
use crate::msgs::expect_len;
use crate::ot::base::{self, BaseSender, POINT_BYTES};
use crate::ot::extension::{ExtReceiver, ExtSender, KAPPA};

/// Blocks of 128 OTs per direction per exchanged chunk: 4 MiB of columns.
pub(crate) const CHUNK_BLOCKS: usize = 2048;

/// This party's OT links with its two peers (in increasing party order).
pub struct Mesh {
    party: usize,
    links: [Link; 2],
}

impl std::fmt::Debug for Mesh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mesh").field("party", &self.party).finish_non_exhaustive()
    }
}

/// Both directions with one peer.
struct Link {
    sender: Sending,
    receiver: Receiving,
}

/// The OTs this party sends: the extension sender with its `Δ` and hash.
struct Sending {
    ext: ExtSender,
    delta: Delta,
    hash: Tccr,
    next: u128,
}

/// The OTs this party receives: the extension receiver and the peer's hash.
struct Receiving {
    ext: ExtReceiver,
    hash: Tccr,
    next: u128,
}

/// One chunk's random OTs with one peer: the messages of those this party sent, the chosen
/// ones of those it received. Wiped on drop.
pub(crate) struct Chunk {
    /// `H(q_j)` of each OT sent: its message for choice 0.
    pub(crate) sent0: Zeroizing<Vec<Block>>,
    /// `H(q_j ⊕ Δ)` of each OT sent: its message for choice 1.
    pub(crate) sent1: Zeroizing<Vec<Block>>,
    /// `H(t_j)` of each OT received.
    pub(crate) received: Zeroizing<Vec<Block>>,
}

impl Mesh {
    /// Sets up the links of party `party` (0, 1 or 2) with its peers: base OTs both ways with
    /// each, at once.
    pub async fn connect<R: RngCore + CryptoRng + ?Sized>(
        party: usize,
        peers: &mut Peers<'_>,
        session: SessionId,
        rng: &mut R,
    ) -> Result<Self> {
        assert!(party < 3, "three parties");
        // As a receiver of the peer's OTs, this party is the base-OT sender.
        let (bs0, s0) = BaseSender::new(rng);
        let (bs1, s1) = BaseSender::new(rng);
        let [from0, from1] = exchange_both(peers, MESH_BASE, session, 0, [&s0, &s1]).await?;
        let mut replies = Vec::with_capacity(2);
        let mut senders = Vec::with_capacity(2);
        for (i, s) in [from0, from1].into_iter().enumerate() {
            let delta = Delta::random(rng);
            let choices = Zeroizing::new((0..KAPPA).map(|i| delta.bit(i)).collect::<Vec<bool>>());
            let (mut reply, keys) = blame(&*peers[i], base::receive(&choices, &s, rng))?;
            let hash = Tccr::random(rng);
            reply.extend_from_slice(&hash.key());
            replies.push(reply);
            senders.push(Sending { ext: ExtSender::new(&delta, &keys), delta, hash, next: 0 });
        }
        let received = exchange_both(peers, MESH_REPLY, session, 0, [&replies[0], &replies[1]]).await?;
        let mut links = Vec::with_capacity(2);
        for (i, ((bs, reply), sender)) in [bs0, bs1].into_iter().zip(received).zip(senders).enumerate() {
            blame(&*peers[i], expect_len(Message::MeshReply, &reply, KAPPA * POINT_BYTES + KEY_BYTES))?;
            let pairs = blame(&*peers[i], bs.finish(&reply[..KAPPA * POINT_BYTES], KAPPA))?;
            let key: [u8; KEY_BYTES] = reply[KAPPA * POINT_BYTES..].try_into().expect("key length");
            let receiver = Receiving { ext: ExtReceiver::new(&pairs), hash: Tccr::from_key(key), next: 0 };
            links.push(Link { sender, receiver });
        }
        let links: [Link; 2] = links.try_into().ok().expect("two peers");
        Ok(Self { party, links })
    }

    /// This party's index.
    pub fn party(&self) -> usize {
        self.party
    }

    /// One chunk of random OTs with both peers at once: with peer `i`, this party receives
    /// `choices[i].len()·128` OTs on those choices and sends `sent[i]·128` (the peer's
    /// count of received ones). One exchange of columns per peer.
    pub(crate) async fn extend(
        &mut self,
        peers: &mut Peers<'_>,
        session: SessionId,
        layer: u32,
        choices: [&[Block]; 2],
        sent: [usize; 2],
    ) -> Result<[Chunk; 2]> {
        let mut messages: [Vec<u8>; 2] = Default::default();
        let mut received: [Zeroizing<Vec<Block>>; 2] = Default::default();
        for i in 0..2 {
            let mut t = Vec::with_capacity(choices[i].len() * 128);
            self.links[i].receiver.ext.extend(choices[i], &mut messages[i], &mut t);
            received[i] = Zeroizing::new(t);
        }
        let columns = exchange_both(peers, COLUMNS, session, layer, [&messages[0], &messages[1]]).await?;
        let mut chunks = Vec::with_capacity(2);
        for (i, (column, mut t)) in columns.into_iter().zip(received).enumerate() {
            let link = &mut self.links[i];
            let mut q = Zeroizing::new(Vec::with_capacity(sent[i] * 128));
            blame(&*peers[i], link.sender.ext.extend(sent[i], &column, &mut q))?;
            let sender = &mut link.sender;
            let tweaks: Vec<u128> = (sender.next..sender.next + q.len() as u128).collect();
            sender.next += q.len() as u128;
            let mut m1 = Zeroizing::new(q.iter().map(|&x| x ^ sender.delta.block()).collect::<Vec<_>>());
            let mut m0 = q;
            sender.hash.hash_many(&mut m0, &tweaks);
            sender.hash.hash_many(&mut m1, &tweaks);
            let receiver = &mut link.receiver;
            let tweaks: Vec<u128> = (receiver.next..receiver.next + t.len() as u128).collect();
            receiver.next += t.len() as u128;
            receiver.hash.hash_many(&mut t, &tweaks);
            chunks.push(Chunk { sent0: m0, sent1: m1, received: t });
        }
        Ok(chunks.try_into().ok().expect("two peers"))
    }
}
