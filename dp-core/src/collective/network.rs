//! A data-parallel group of processes, on one machine or several, over TCP: an
//! [`Orchestrator`] that the user starts on an address they name, and one [`NetworkPeer`] per
//! process. Every all-reduce sends each peer's values to the orchestrator, which sums them in
//! rank order (so every run sums alike) and sends the sum back to every peer.
//!
//! Written here rather than taken from burn-collective's multi-node engine, which in burn
//! 0.21.0 binds every interface (`0.0.0.0`), admits any peer, and hangs on the second global
//! all-reduce of a group (its barrier never clears; see the README).
//!
//! # Security and privacy
//! - The orchestrator binds only the address it is given, and admits only peers that prove
//!   they hold the job's secret ([`JobSecret`], 256 bits): challenge and response with
//!   HMAC-SHA256 over fresh nonces of both sides, so the secret never crosses the network and
//!   a recorded handshake cannot be replayed; each peer checks the orchestrator's answer too.
//!   A connection that fails the handshake is closed without a word.
//! - After admission the messages are **neither encrypted nor authenticated**: they are the
//!   peers' **un-noised** clipped sums (the noise is added once, by peer 0) and peer 0's
//!   replica. The machines and the network between them are the trust boundary: run the group
//!   on a private network (or through an SSH tunnel or VPN), never across the internet.

use super::AllReduce;
use crate::error::{DpError, Result};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::io::{BufReader, BufWriter, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

type HmacSha256 = Hmac<Sha256>;

const HELLO: &[u8; 8] = b"DPBURN1\n";
const START: u8 = 0xA5;
const VALUES: u8 = 1;
const LEAVE: u8 = 2;
const FAILED: u8 = 3;
/// How long a connecting peer has to complete its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The most values one all-reduce may carry (16 GiB of f32).
const MAX_VALUES: u64 = 1 << 32;

fn network(what: impl std::fmt::Display) -> DpError {
    DpError::Collective(what.to_string())
}

/// The secret of one data-parallel job: 256 random bits, kept in a file readable by its owner
/// only, copied to every machine of the group. Never printed (its `Debug` hides it).
#[derive(Clone)]
pub struct JobSecret([u8; 32]);

impl std::fmt::Debug for JobSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JobSecret(hidden)")
    }
}

impl JobSecret {
    /// A fresh secret from the operating system.
    pub fn generate() -> Result<Self> {
        crate::rng::SecureRng::os_key().map(Self)
    }

    /// Reads the secret in `path` (64 hex digits).
    pub fn read(path: &Path) -> Result<Self> {
        let fail = |why: String| network(format!("job secret {}: {why}", path.display()));
        let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
        let hex = text.trim();
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(fail(
                "expected 64 hex digits (made by `dp-train orchestrator`)".into(),
            ));
        }
        let mut key = [0u8; 32];
        for (i, k) in key.iter_mut().enumerate() {
            *k = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|e| fail(e.to_string()))?;
        }
        Ok(Self(key))
    }

    /// Writes a fresh secret to `path`, which must not exist yet (readable by its owner only).
    pub fn create(path: &Path) -> Result<Self> {
        let secret = Self::generate()?;
        let hex: String = secret.0.iter().map(|b| format!("{b:02x}")).collect();
        let fail = |e: std::io::Error| network(format!("job secret {}: {e}", path.display()));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(fail)?;
        file.write_all(format!("{hex}\n").as_bytes())
            .map_err(fail)?;
        file.sync_all().map_err(fail)?;
        Ok(secret)
    }

    fn mac(&self, parts: &[&[u8]]) -> HmacSha256 {
        // HMAC pads a key shorter than the hash's block with zeros (RFC 2104): the same
        // HMAC as keying it with the 32 bytes.
        let mut block = [0u8; 64];
        block[..32].copy_from_slice(&self.0);
        let mut mac = <HmacSha256 as KeyInit>::new(&block.into());
        for p in parts {
            mac.update(p);
        }
        mac
    }
}

/// What both sides of a handshake know once the peer has introduced itself; the proofs each
/// side gives of holding the secret are HMACs over all of it, with a label per side.
struct Handshake {
    server_nonce: [u8; 32],
    client_nonce: [u8; 32],
    rank: [u8; 4],
    nodes: [u8; 4],
}

impl Handshake {
    fn peer_proof(&self, secret: &JobSecret) -> HmacSha256 {
        let (s, c) = (&self.server_nonce, &self.client_nonce);
        secret.mac(&[b"peer", s, c, &self.rank, &self.nodes])
    }

    fn orchestrator_proof(&self, secret: &JobSecret, status: u8) -> HmacSha256 {
        let (s, c) = (&self.server_nonce, &self.client_nonce);
        secret.mac(&[b"orchestrator", c, s, &self.rank, &self.nodes, &[status]])
    }
}

fn nonce() -> Result<[u8; 32]> {
    crate::rng::SecureRng::os_key()
}

fn read_array<const N: usize>(r: &mut impl Read) -> std::io::Result<[u8; N]> {
    let mut out = [0u8; N];
    r.read_exact(&mut out)?;
    Ok(out)
}

fn write_values(w: &mut impl Write, tag: u8, values: &[f32]) -> std::io::Result<()> {
    w.write_all(&[tag])?;
    w.write_all(&(values.len() as u64).to_le_bytes())?;
    let mut bytes = Vec::with_capacity(values.len() * 4);
    for v in values {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    w.write_all(&bytes)?;
    w.flush()
}

fn read_values(r: &mut impl Read) -> std::io::Result<std::result::Result<Vec<f32>, u8>> {
    let [tag] = read_array::<1>(r)?;
    if tag != VALUES {
        return Ok(Err(tag));
    }
    let n = u64::from_le_bytes(read_array::<8>(r)?);
    if n > MAX_VALUES {
        return Err(std::io::Error::other(format!("{n} values in one message")));
    }
    let mut bytes = vec![0u8; n as usize * 4];
    r.read_exact(&mut bytes)?;
    Ok(Ok(bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()))
}

fn write_failure(w: &mut impl Write, why: &str) -> std::io::Result<()> {
    w.write_all(&[FAILED])?;
    w.write_all(&(why.len() as u32).to_le_bytes())?;
    w.write_all(why.as_bytes())?;
    w.flush()
}

/// An admitted peer's connection.
struct Admitted {
    reader: BufReader<TcpStream>,
    writer: BufWriter<TcpStream>,
    from: SocketAddr,
}

/// The orchestrator of a group of `nodes` [`NetworkPeer`]s: admits them, then sums their
/// values at every all-reduce until they all leave.
#[derive(Debug)]
pub struct Orchestrator {
    listener: TcpListener,
    nodes: usize,
    secret: JobSecret,
    admission: Duration,
}

impl Orchestrator {
    /// Binds `address` (e.g. `10.0.0.1:7070`; only that address, never every interface)
    /// for a group of `nodes` peers holding `secret`; all of them must join within
    /// `admission`.
    pub fn bind(
        address: &str,
        nodes: usize,
        secret: JobSecret,
        admission: Duration,
    ) -> Result<Self> {
        if nodes == 0 {
            return Err(DpError::invalid("nodes", "N", 0, ">= 1"));
        }
        let listener = TcpListener::bind(address)
            .map_err(|e| network(format!("cannot listen on {address}: {e}")))?;
        Ok(Self {
            listener,
            nodes,
            secret,
            admission,
        })
    }

    /// The address it listens on (with the port the system chose for port 0).
    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.listener.local_addr().map_err(network)
    }

    /// Admits the peers, then serves their all-reduces until every peer has left (`Ok`) or
    /// one fails or disconnects (every other peer is told, then `Err`). `log` receives one
    /// line per event (a refused connection, admissions, the end).
    pub fn run(self, log: impl Fn(&str)) -> Result<()> {
        let peers = self.admit(&log)?;
        log(&format!("all {} peers admitted", self.nodes));
        // No one else is admitted: later connections are refused by the system.
        drop(self.listener);
        serve(peers, &log)
    }

    fn admit(&self, log: &impl Fn(&str)) -> Result<Vec<Admitted>> {
        let deadline = Instant::now() + self.admission;
        self.listener.set_nonblocking(true).map_err(network)?;
        let mut admitted: Vec<Option<Admitted>> = (0..self.nodes).map(|_| None).collect();
        while admitted.iter().any(Option::is_none) {
            if Instant::now() > deadline {
                let missing: Vec<usize> =
                    (0..self.nodes).filter(|&r| admitted[r].is_none()).collect();
                let why = format!(
                    "peers {missing:?} did not join within {} s",
                    self.admission.as_secs()
                );
                for peer in admitted.iter_mut().flatten() {
                    let _ = write_failure(&mut peer.writer, &why);
                }
                return Err(network(why));
            }
            let (stream, from) = match self.listener.accept() {
                Ok(conn) => conn,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
                Err(e) => return Err(network(e)),
            };
            match self.handshake(stream, &admitted) {
                Ok((rank, peer)) => {
                    log(&format!("admitted peer {rank} from {from}"));
                    admitted[rank] = Some(peer);
                }
                Err(why) => log(&format!("refused a connection from {from}: {why}")),
            }
        }
        let mut peers: Vec<Admitted> = admitted.into_iter().flatten().collect();
        for peer in &mut peers {
            peer.writer.write_all(&[START]).map_err(network)?;
            peer.writer.flush().map_err(network)?;
        }
        Ok(peers)
    }

    fn handshake(
        &self,
        stream: TcpStream,
        admitted: &[Option<Admitted>],
    ) -> std::result::Result<(usize, Admitted), String> {
        let from = stream.peer_addr().map_err(|e| e.to_string())?;
        stream.set_nonblocking(false).map_err(|e| e.to_string())?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(HANDSHAKE_TIMEOUT))
            .map_err(|e| e.to_string())?;
        let mut reader = BufReader::new(stream.try_clone().map_err(|e| e.to_string())?);
        let mut writer = BufWriter::new(stream.try_clone().map_err(|e| e.to_string())?);
        let server_nonce = nonce().map_err(|e| e.to_string())?;
        writer.write_all(HELLO).map_err(|e| e.to_string())?;
        writer.write_all(&server_nonce).map_err(|e| e.to_string())?;
        writer.flush().map_err(|e| e.to_string())?;
        let io = |e: std::io::Error| format!("handshake: {e}");
        let rank_bytes = read_array::<4>(&mut reader).map_err(io)?;
        let nodes_bytes = read_array::<4>(&mut reader).map_err(io)?;
        let client_nonce = read_array::<32>(&mut reader).map_err(io)?;
        let tag = read_array::<32>(&mut reader).map_err(io)?;
        let handshake = Handshake {
            server_nonce,
            client_nonce,
            rank: rank_bytes,
            nodes: nodes_bytes,
        };
        handshake
            .peer_proof(&self.secret)
            .verify_slice(&tag)
            .map_err(|_| "it does not hold the job's secret".to_string())?;
        let rank = u32::from_le_bytes(rank_bytes) as usize;
        let nodes = u32::from_le_bytes(nodes_bytes) as usize;
        let status = if nodes != self.nodes {
            2
        } else if rank >= nodes {
            3
        } else if admitted[rank].is_some() {
            1
        } else {
            0
        };
        let answer = handshake
            .orchestrator_proof(&self.secret, status)
            .finalize()
            .into_bytes();
        writer.write_all(&answer).map_err(|e| e.to_string())?;
        writer.write_all(&[status]).map_err(|e| e.to_string())?;
        writer.flush().map_err(|e| e.to_string())?;
        match status {
            0 => {}
            1 => return Err(format!("peer {rank} has joined already")),
            2 => {
                return Err(format!(
                    "it expects {nodes} peers, this job has {}",
                    self.nodes
                ))
            }
            _ => return Err(format!("rank {rank} is not below {nodes}")),
        }
        stream.set_read_timeout(None).map_err(|e| e.to_string())?;
        Ok((
            rank,
            Admitted {
                reader,
                writer,
                from,
            },
        ))
    }
}

/// The all-reduces of an admitted group, until every peer leaves or one fails.
fn serve(mut peers: Vec<Admitted>, log: &impl Fn(&str)) -> Result<()> {
    let mut rounds = 0u64;
    loop {
        let mut sum: Option<Vec<f32>> = None;
        let mut leaving = 0;
        let mut failure = None;
        for (rank, peer) in peers.iter_mut().enumerate() {
            match read_values(&mut peer.reader) {
                Ok(Ok(values)) => match &mut sum {
                    None => sum = Some(values),
                    Some(s) if s.len() == values.len() => {
                        s.iter_mut().zip(&values).for_each(|(a, b)| *a += b)
                    }
                    Some(s) => {
                        failure = Some(format!(
                            "peer {rank} sent {} values, peer 0 {}",
                            values.len(),
                            s.len()
                        ));
                    }
                },
                Ok(Err(LEAVE)) => leaving += 1,
                Ok(Err(tag)) => failure = Some(format!("peer {rank} sent message {tag}")),
                Err(e) => {
                    failure = Some(format!(
                        "peer {rank} ({}) disconnected or failed: {e}",
                        peer.from
                    ))
                }
            }
            if failure.is_some() {
                break;
            }
        }
        if failure.is_none() && leaving > 0 && leaving < peers.len() {
            failure = Some(format!(
                "{leaving} of {} peers left while the others went on",
                peers.len()
            ));
        }
        if let Some(why) = failure {
            for peer in &mut peers {
                let _ = write_failure(&mut peer.writer, &why);
            }
            log(&format!("stopped after {rounds} all-reduces: {why}"));
            return Err(network(why));
        }
        if leaving == peers.len() {
            log(&format!("every peer left after {rounds} all-reduces"));
            return Ok(());
        }
        let sum = sum.unwrap_or_default();
        for peer in &mut peers {
            write_values(&mut peer.writer, VALUES, &sum).map_err(network)?;
        }
        rounds += 1;
    }
}

/// One process of a group served by an [`Orchestrator`].
#[derive(Debug)]
pub struct NetworkPeer {
    rank: usize,
    peers: usize,
    stream: Mutex<(BufReader<TcpStream>, BufWriter<TcpStream>)>,
}

impl NetworkPeer {
    /// Joins the group of `peers` processes as peer `rank` through the orchestrator at
    /// `orchestrator` (`HOST:PORT`), proving it holds `secret`; retries the connection for up
    /// to `connect_for` (the orchestrator may start later), then waits until every peer has
    /// joined.
    pub fn join(
        orchestrator: &str,
        rank: usize,
        peers: usize,
        secret: &JobSecret,
        connect_for: Duration,
    ) -> Result<Self> {
        if peers == 0 || rank >= peers {
            return Err(DpError::invalid(
                "rank",
                "r",
                rank,
                "< peers (and peers >= 1)",
            ));
        }
        let deadline = Instant::now() + connect_for;
        let stream = loop {
            let attempt = orchestrator
                .to_socket_addrs()
                .map_err(|e| network(format!("orchestrator address {orchestrator}: {e}")))?
                .find_map(|a| TcpStream::connect_timeout(&a, Duration::from_secs(5)).ok());
            match attempt {
                Some(s) => break s,
                None if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(200)),
                None => {
                    return Err(network(format!(
                        "no orchestrator at {orchestrator} within {} s",
                        connect_for.as_secs()
                    )))
                }
            }
        };
        stream.set_nodelay(true).map_err(network)?;
        stream
            .set_read_timeout(Some(HANDSHAKE_TIMEOUT))
            .map_err(network)?;
        let mut reader = BufReader::new(stream.try_clone().map_err(network)?);
        let mut writer = BufWriter::new(stream.try_clone().map_err(network)?);
        let io = |e: std::io::Error| network(format!("handshake with {orchestrator}: {e}"));
        let hello = read_array::<8>(&mut reader).map_err(io)?;
        if &hello != HELLO {
            return Err(network(format!(
                "{orchestrator} is not a dp-train orchestrator"
            )));
        }
        let server_nonce = read_array::<32>(&mut reader).map_err(io)?;
        let client_nonce = nonce()?;
        let (rank_bytes, nodes_bytes) = ((rank as u32).to_le_bytes(), (peers as u32).to_le_bytes());
        let handshake = Handshake {
            server_nonce,
            client_nonce,
            rank: rank_bytes,
            nodes: nodes_bytes,
        };
        let tag = handshake.peer_proof(secret).finalize().into_bytes();
        for part in [&rank_bytes[..], &nodes_bytes, &client_nonce, &tag] {
            writer.write_all(part).map_err(io)?;
        }
        writer.flush().map_err(io)?;
        let answer = read_array::<32>(&mut reader).map_err(|_| {
            network(format!(
                "the orchestrator at {orchestrator} refused this peer: the job's secret differs"
            ))
        })?;
        let [status] = read_array::<1>(&mut reader).map_err(io)?;
        handshake
            .orchestrator_proof(secret, status)
            .verify_slice(&answer)
            .map_err(|_| {
                network(format!(
                    "{orchestrator} does not hold the job's secret: not this job's orchestrator"
                ))
            })?;
        match status {
            0 => {}
            1 => return Err(network(format!("peer {rank} has joined already"))),
            2 => {
                return Err(network(format!(
                    "the orchestrator's job does not have {peers} peers"
                )))
            }
            _ => return Err(network(format!("rank {rank} is out of range"))),
        }
        stream.set_read_timeout(None).map_err(network)?;
        // Every peer admitted: the group starts.
        match read_array::<1>(&mut reader) {
            Ok([START]) => {}
            Ok([FAILED]) | Err(_) => {
                return Err(network("the orchestrator gave up before every peer joined"))
            }
            Ok([other]) => return Err(network(format!("unexpected message {other}"))),
        }
        Ok(Self {
            rank,
            peers,
            stream: Mutex::new((reader, writer)),
        })
    }

    /// Leaves the group (after the last step); the orchestrator ends when every peer has.
    pub fn leave(self) -> Result<()> {
        let mut guard = self
            .stream
            .lock()
            .map_err(|_| network("a peer thread panicked"))?;
        let writer = &mut guard.1;
        writer.write_all(&[LEAVE]).map_err(network)?;
        writer.flush().map_err(network)
    }

    fn sum(&self, values: &[f32]) -> Result<Vec<f32>> {
        let mut guard = self
            .stream
            .lock()
            .map_err(|_| network("a peer thread panicked"))?;
        let (reader, writer) = &mut *guard;
        write_values(writer, VALUES, values).map_err(|e| network(format!("all-reduce: {e}")))?;
        match read_values(reader).map_err(|e| network(format!("all-reduce: {e}")))? {
            Ok(sum) if sum.len() == values.len() => Ok(sum),
            Ok(sum) => Err(network(format!(
                "{} values came back for {}",
                sum.len(),
                values.len()
            ))),
            Err(FAILED) => {
                let len = u32::from_le_bytes(read_array::<4>(reader).map_err(network)?) as usize;
                let mut why = vec![0u8; len.min(1 << 16)];
                reader.read_exact(&mut why).map_err(network)?;
                Err(network(format!(
                    "the group stopped: {}",
                    String::from_utf8_lossy(&why)
                )))
            }
            Err(tag) => Err(network(format!("unexpected message {tag}"))),
        }
    }
}

impl<B: Backend> AllReduce<B> for NetworkPeer {
    fn rank(&self) -> usize {
        self.rank
    }

    fn peers(&self) -> usize {
        self.peers
    }

    fn all_reduce_sum(&self, values: Tensor<B, 1>) -> Result<Tensor<B, 1>> {
        let device = values.device();
        let host = crate::readback::to_host(values);
        let n = host.len();
        let sum = self.sum(&host)?;
        Ok(Tensor::from_data(TensorData::new(sum, [n]), &device))
    }
}
