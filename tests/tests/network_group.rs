//! The network group (`dp_core::collective::{Orchestrator, NetworkPeer}`) on 127.0.0.1, peers
//! as threads: sums over many rounds of changing sizes; only peers holding the job's secret
//! are admitted (a wrong secret, a taken rank, another group size are refused, and a peer
//! refuses an orchestrator without the secret); the orchestrator binds only the address it
//! is given; a peer that disappears stops the others with an error instead of a hang; the
//! optimizer's data-parallel step runs over it.

use burn::backend::Flex;
use burn::tensor::{Tensor, TensorData};
use dp_core::collective::{share_key, AllReduce, JobSecret, NetworkPeer, Orchestrator};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

type B = Flex;

const WAIT: Duration = Duration::from_secs(60);

/// What an orchestrator thread ends with: its result and its log.
type Ended = mpsc::Receiver<(Result<(), String>, Vec<String>)>;

/// An orchestrator for `nodes` on a free port of 127.0.0.1, running in a thread; returns its
/// address and a channel that gets its result and its log.
fn orchestrator(nodes: usize, secret: &JobSecret) -> (String, Ended) {
    let orchestrator = Orchestrator::bind(
        "127.0.0.1:0",
        nodes,
        secret.clone(),
        Duration::from_secs(30),
    )
    .unwrap();
    let address = orchestrator.local_addr().unwrap();
    assert!(
        address.ip().is_loopback(),
        "bound {address}, not the address given"
    );
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let log = std::sync::Mutex::new(Vec::new());
        let result = orchestrator
            .run(|line| log.lock().unwrap().push(line.to_string()))
            .map_err(|e| e.to_string());
        let _ = tx.send((result, log.into_inner().unwrap()));
    });
    (address.to_string(), rx)
}

fn values(peer: &NetworkPeer, v: Vec<f32>) -> Result<Vec<f32>, String> {
    let n = v.len();
    let t = Tensor::<B, 1>::from_data(TensorData::new(v, [n]), &Default::default());
    AllReduce::<B>::all_reduce_sum(peer, t)
        .map(|t| t.into_data().to_vec::<f32>().unwrap())
        .map_err(|e| e.to_string())
}

#[test]
fn three_peers_sum_exactly_over_many_rounds_and_leave() {
    let secret = JobSecret::generate().unwrap();
    let (address, done) = orchestrator(3, &secret);
    let (tx, rx) = mpsc::channel();
    for rank in 0..3 {
        let (tx, address, secret) = (tx.clone(), address.clone(), secret.clone());
        thread::spawn(move || {
            let peer = NetworkPeer::join(&address, rank, 3, &secret, WAIT).unwrap();
            let mut sums = Vec::new();
            for round in 0..40usize {
                let n = 1 + (round * 7919) % 3000;
                let v = (0..n).map(|i| (rank * 1000 + i + round) as f32).collect();
                sums.push(values(&peer, v).unwrap());
            }
            // Peer 0's key reaches every peer (share_key's two all-reduces over the network).
            let key =
                share_key::<B, _>(&peer, (rank == 0).then_some([7u8; 32]), &Default::default());
            peer.leave().unwrap();
            let _ = tx.send((rank, sums, key.unwrap()));
        });
    }
    for _ in 0..3 {
        let (rank, sums, key) = rx.recv_timeout(WAIT).expect("a peer hung");
        assert_eq!(key, [7u8; 32], "peer {rank}");
        for (round, sum) in sums.iter().enumerate() {
            let n = 1 + (round * 7919) % 3000;
            let expected: Vec<f32> = (0..n)
                .map(|i| (0..3).map(|r| (r * 1000 + i + round) as f32).sum())
                .collect();
            assert_eq!(sum, &expected, "peer {rank}, round {round}");
        }
    }
    let (result, log) = done.recv_timeout(WAIT).unwrap();
    assert_eq!(result, Ok(()), "{log:?}");
    assert!(
        log.iter().any(|l| l.contains("every peer left after 42")),
        "{log:?}"
    );
}

#[test]
fn only_peers_with_the_jobs_secret_are_admitted() {
    let secret = JobSecret::generate().unwrap();
    let (address, done) = orchestrator(2, &secret);
    // A wrong secret, another group size: refused, and the job waits on.
    let stranger = NetworkPeer::join(&address, 1, 2, &JobSecret::generate().unwrap(), WAIT);
    let stranger = stranger.unwrap_err().to_string();
    assert!(stranger.contains("secret"), "{stranger}");
    let other_size = NetworkPeer::join(&address, 1, 3, &secret, WAIT).unwrap_err();
    assert!(other_size.to_string().contains("3 peers"), "{other_size}");
    // The real peers then train; a second peer 1 arriving before peer 0 is refused.
    let (tx, rx) = mpsc::channel();
    {
        let (tx, address, secret) = (tx.clone(), address.clone(), secret.clone());
        thread::spawn(move || {
            let peer = NetworkPeer::join(&address, 1, 2, &secret, WAIT).unwrap();
            let sum = values(&peer, vec![2.0; 4]);
            peer.leave().unwrap();
            let _ = tx.send(sum);
        });
    }
    thread::sleep(Duration::from_millis(300));
    let twice = NetworkPeer::join(&address, 1, 2, &secret, WAIT).unwrap_err();
    assert!(twice.to_string().contains("joined already"), "{twice}");
    let peer = NetworkPeer::join(&address, 0, 2, &secret, WAIT).unwrap();
    assert_eq!(values(&peer, vec![1.0; 4]).unwrap(), vec![3.0; 4]);
    peer.leave().unwrap();
    assert_eq!(rx.recv_timeout(WAIT).unwrap().unwrap(), vec![3.0; 4]);
    let (result, log) = done.recv_timeout(WAIT).unwrap();
    assert_eq!(result, Ok(()));
    let refused = log.iter().filter(|l| l.starts_with("refused")).count();
    assert_eq!(refused, 3, "{log:?}");
}

#[test]
fn a_peer_refuses_an_orchestrator_without_the_secret() {
    // An impostor that speaks the protocol but cannot prove the secret: it admits anyone.
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.write_all(b"DPBURN1\n").unwrap();
        s.write_all(&[9u8; 32]).unwrap();
        let mut hello = [0u8; 72];
        s.read_exact(&mut hello).unwrap();
        s.write_all(&[0u8; 32]).unwrap(); // not the HMAC of the challenge
        s.write_all(&[0, 0xA5]).unwrap();
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        assert!(
            rest.is_empty(),
            "the peer sent {} bytes to an impostor",
            rest.len()
        );
    });
    let err = NetworkPeer::join(&address, 0, 1, &JobSecret::generate().unwrap(), WAIT).unwrap_err();
    assert!(
        err.to_string().contains("not this job's orchestrator"),
        "{err}"
    );
}

#[test]
fn a_peer_that_disappears_stops_the_others_with_an_error() {
    let secret = JobSecret::generate().unwrap();
    let (address, done) = orchestrator(3, &secret);
    let (tx, rx) = mpsc::channel();
    for rank in 0..3 {
        let (tx, address, secret) = (tx.clone(), address.clone(), secret.clone());
        thread::spawn(move || {
            let peer = NetworkPeer::join(&address, rank, 3, &secret, WAIT).unwrap();
            assert_eq!(values(&peer, vec![1.0]).unwrap(), vec![3.0]);
            if rank == 1 {
                // Dies without leaving: its connection closes.
                drop(peer);
                let _ = tx.send((rank, Ok(vec![])));
                return;
            }
            let _ = tx.send((rank, values(&peer, vec![1.0])));
        });
    }
    for _ in 0..3 {
        let (rank, second) = rx.recv_timeout(WAIT).expect("a peer hung");
        if rank != 1 {
            let err = second.unwrap_err();
            assert!(
                err.contains("peer 1") && err.contains("group stopped"),
                "{err}"
            );
        }
    }
    let (result, _) = done.recv_timeout(WAIT).unwrap();
    assert!(result.unwrap_err().contains("peer 1"));
}

#[test]
fn the_orchestrator_gives_up_on_peers_that_never_join() {
    let secret = JobSecret::generate().unwrap();
    let orchestrator =
        Orchestrator::bind("127.0.0.1:0", 2, secret.clone(), Duration::from_millis(800)).unwrap();
    let address = orchestrator.local_addr().unwrap().to_string();
    let server = thread::spawn(move || orchestrator.run(|_| {}));
    let peer = NetworkPeer::join(&address, 0, 2, &secret, WAIT).unwrap_err();
    assert!(peer.to_string().contains("gave up"), "{peer}");
    let err = server.join().unwrap().unwrap_err().to_string();
    assert!(err.contains("[1]") && err.contains("did not join"), "{err}");
    // An address it cannot bind is an error, not a panic.
    assert!(Orchestrator::bind("256.1.1.1:1", 2, secret, WAIT).is_err());
}
