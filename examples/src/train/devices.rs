//! `--devices`: the devices of this machine a run trains on, one data-parallel peer each.

use super::run::DeviceChoice;
use std::fmt;
use std::str::FromStr;

/// Which devices of a kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceList {
    /// `count` peers on the kind's default device (the CPU has only that one).
    Default(usize),
    /// Devices by index (`cuda:0,1`, `wgpu:0,1`: the first and second GPU).
    Indices(Vec<usize>),
}

/// The devices of a run: `cpu`, `cpu:N` (N peers on the CPU), `cuda`, `cuda:I,J,…`,
/// `wgpu`, `wgpu:I,J,…`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Devices {
    /// The backend.
    pub kind: DeviceChoice,
    /// Which of its devices.
    pub list: DeviceList,
}

impl Devices {
    /// The kind's default device, one peer.
    pub fn one(kind: DeviceChoice) -> Self {
        Self {
            kind,
            list: DeviceList::Default(1),
        }
    }

    /// The number of peers.
    pub fn peers(&self) -> usize {
        match &self.list {
            DeviceList::Default(n) => *n,
            DeviceList::Indices(ids) => ids.len(),
        }
    }
}

fn kind_name(kind: DeviceChoice) -> &'static str {
    match kind {
        DeviceChoice::Cpu => "cpu",
        DeviceChoice::Cuda => "cuda",
        DeviceChoice::Wgpu => "wgpu",
    }
}

impl fmt::Display for Devices {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = kind_name(self.kind);
        match &self.list {
            DeviceList::Default(1) => write!(f, "{kind}"),
            DeviceList::Default(n) => write!(f, "{kind}:{n}"),
            DeviceList::Indices(ids) => {
                let ids: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
                write!(f, "{kind}:{}", ids.join(","))
            }
        }
    }
}

/// At most this many peers in one process.
pub const MAX_PEERS: usize = 64;

impl FromStr for Devices {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let usage =
            "expected cpu, cpu:N (N peers on the CPU), cuda, cuda:I,J,… or wgpu, wgpu:I,J,…";
        let (kind, rest) = match s.split_once(':') {
            Some((k, r)) => (k, Some(r)),
            None => (s, None),
        };
        let kind = match kind {
            "cpu" => DeviceChoice::Cpu,
            "cuda" => DeviceChoice::Cuda,
            "wgpu" => DeviceChoice::Wgpu,
            other => return Err(format!("unknown device kind {other:?}: {usage}")),
        };
        let Some(rest) = rest else {
            return Ok(Self::one(kind));
        };
        let numbers = rest
            .split(',')
            .map(|n| n.trim().parse::<usize>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| format!("{s:?}: {usage}"))?;
        let list = match kind {
            DeviceChoice::Cpu => match numbers[..] {
                [n] if (1..=MAX_PEERS).contains(&n) => DeviceList::Default(n),
                [n] => {
                    return Err(format!(
                        "{s:?}: the number of CPU peers must be 1 to {MAX_PEERS}, not {n}"
                    ))
                }
                _ => {
                    return Err(format!(
                        "{s:?}: the CPU backend has one device; cpu:N runs N peers on it"
                    ))
                }
            },
            _ => {
                let mut seen = numbers.clone();
                seen.sort_unstable();
                seen.dedup();
                if seen.len() != numbers.len() {
                    return Err(format!("{s:?}: a device is listed twice"));
                }
                if numbers.len() > MAX_PEERS {
                    return Err(format!("{s:?}: at most {MAX_PEERS} devices"));
                }
                DeviceList::Indices(numbers)
            }
        };
        Ok(Self { kind, list })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form_and_prints_it_back() {
        for (text, kind, list) in [
            ("cpu", DeviceChoice::Cpu, DeviceList::Default(1)),
            ("cpu:2", DeviceChoice::Cpu, DeviceList::Default(2)),
            ("cuda", DeviceChoice::Cuda, DeviceList::Default(1)),
            (
                "cuda:0,1",
                DeviceChoice::Cuda,
                DeviceList::Indices(vec![0, 1]),
            ),
            ("cuda:3", DeviceChoice::Cuda, DeviceList::Indices(vec![3])),
            (
                "wgpu:1,0",
                DeviceChoice::Wgpu,
                DeviceList::Indices(vec![1, 0]),
            ),
        ] {
            let devices: Devices = text.parse().unwrap();
            assert_eq!(devices, Devices { kind, list }, "{text}");
            assert_eq!(devices.to_string(), text);
        }
        assert_eq!("cpu:3".parse::<Devices>().unwrap().peers(), 3);
    }

    #[test]
    fn refuses_what_it_cannot_run() {
        for bad in [
            "tpu", "cpu:0", "cpu:0,1", "cpu:x", "cuda:", "cuda:0,0", "cuda:-1", "cpu:65",
        ] {
            assert!(bad.parse::<Devices>().is_err(), "{bad} was accepted");
        }
    }
}
