//! What a rank publishes at rendezvous for the verbs transport: its port's
//! address (GID, LID, MTU), its byte order, the packet sequence number it
//! starts from, and the number of the queue pair it created for each peer.
//!
//! ```text
//! verbs1 order=le port=1 lid=0 mtu=5 psn=1193046 gid=00000000000000000000ffff7f000001 qpn=17,-,18,19
//! ```
//! `qpn` lists one queue pair number per rank, `-` at the publisher's own rank.

use crate::error::{Error, Result};
use std::fmt::Write as _;

const TAG: &str = "verbs1";

/// One rank's verbs endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VerbsEndpoint {
    /// `true` when the rank stores words little-endian.
    pub little_endian: bool,
    /// Port number on its device.
    pub port: u8,
    /// Local identifier (InfiniBand; 0 on RoCE).
    pub lid: u16,
    /// Active MTU as the verbs enum value (1 = 256 B ... 5 = 4096 B).
    pub mtu: u32,
    /// First packet sequence number of its send queues (24 bits).
    pub psn: u32,
    /// Its GID.
    pub gid: [u8; 16],
    /// Queue pair number per rank (`None` at its own rank).
    pub qpn: Vec<Option<u32>>,
}

/// This machine's byte order as published.
pub(crate) fn native_little_endian() -> bool {
    cfg!(target_endian = "little")
}

impl VerbsEndpoint {
    /// The published string.
    pub fn encode(&self) -> String {
        let mut s = format!(
            "{TAG} order={} port={} lid={} mtu={} psn={} gid=",
            if self.little_endian { "le" } else { "be" },
            self.port,
            self.lid,
            self.mtu,
            self.psn
        );
        for b in self.gid {
            let _ = write!(s, "{b:02x}");
        }
        s.push_str(" qpn=");
        for (i, q) in self.qpn.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            match q {
                Some(q) => {
                    let _ = write!(s, "{q}");
                }
                None => s.push('-'),
            }
        }
        s
    }

    /// Parses rank `rank`'s endpoint in a job of `world` ranks.
    pub fn decode(text: &str, rank: usize, world: usize) -> Result<VerbsEndpoint> {
        let bad = |what: String| {
            Error::Protocol(format!(
                "rank {rank} published a malformed verbs endpoint ({what}): {text:?}"
            ))
        };
        let mut words = text.split_whitespace();
        if words.next() != Some(TAG) {
            return Err(bad(format!("it does not start with {TAG:?}")));
        }
        let (mut order, mut port, mut lid, mut mtu, mut psn, mut gid, mut qpn) =
            (None, None, None, None, None, None, None);
        for w in words {
            let Some((k, v)) = w.split_once('=') else {
                return Err(bad(format!("{w:?} is not key=value")));
            };
            let num = |v: &str| v.parse::<u64>().map_err(|_| bad(format!("{k}={v:?}")));
            match k {
                "order" => {
                    order = Some(match v {
                        "le" => true,
                        "be" => false,
                        _ => return Err(bad(format!("order={v:?}"))),
                    })
                }
                "port" => port = Some(num(v)?),
                "lid" => lid = Some(num(v)?),
                "mtu" => mtu = Some(num(v)?),
                "psn" => psn = Some(num(v)?),
                "gid" => gid = Some(parse_gid(v).ok_or_else(|| bad(format!("gid={v:?}")))?),
                "qpn" => {
                    let list: Option<Vec<Option<u32>>> = v
                        .split(',')
                        .map(|q| match q {
                            "-" => Some(None),
                            q => q.parse::<u32>().ok().filter(|n| *n < 1 << 24).map(Some),
                        })
                        .collect();
                    qpn = Some(list.ok_or_else(|| bad(format!("qpn={v:?}")))?);
                }
                _ => {} // Newer fields are ignored.
            }
        }
        let missing = |k: &str| bad(format!("no {k}"));
        let port = port.ok_or_else(|| missing("port"))?;
        let lid = lid.ok_or_else(|| missing("lid"))?;
        let mtu = mtu.ok_or_else(|| missing("mtu"))?;
        let psn = psn.ok_or_else(|| missing("psn"))?;
        let qpn = qpn.ok_or_else(|| missing("qpn"))?;
        if !(1..=255).contains(&port) {
            return Err(bad(format!("port {port}")));
        }
        if lid > u64::from(u16::MAX) {
            return Err(bad(format!("lid {lid}")));
        }
        if !(1..=5).contains(&mtu) {
            return Err(bad(format!("mtu {mtu}")));
        }
        if psn >= 1 << 24 {
            return Err(bad(format!("psn {psn}")));
        }
        if qpn.len() != world {
            return Err(bad(format!("{} queue pairs for {world} ranks", qpn.len())));
        }
        for (r, q) in qpn.iter().enumerate() {
            if (r == rank) != q.is_none() {
                return Err(bad(format!("queue pair entry for rank {r}")));
            }
        }
        Ok(VerbsEndpoint {
            little_endian: order.ok_or_else(|| missing("order"))?,
            port: port as u8,
            lid: lid as u16,
            mtu: mtu as u32,
            psn: psn as u32,
            gid: gid.ok_or_else(|| missing("gid"))?,
            qpn,
        })
    }
}

fn parse_gid(v: &str) -> Option<[u8; 16]> {
    if v.len() != 32 || !v.is_ascii() {
        return None;
    }
    let mut g = [0u8; 16];
    for (i, b) in g.iter_mut().enumerate() {
        *b = u8::from_str_radix(&v[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(g)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> VerbsEndpoint {
        let mut gid = [0u8; 16];
        gid[10] = 0xff;
        gid[11] = 0xff;
        gid[12..].copy_from_slice(&[127, 0, 0, 1]);
        VerbsEndpoint {
            little_endian: true,
            port: 1,
            lid: 0,
            mtu: 5,
            psn: 0x12_3456,
            gid,
            qpn: vec![Some(17), None, Some(18), Some(19)],
        }
    }

    #[test]
    fn round_trips() {
        let e = sample();
        let s = e.encode();
        assert_eq!(
            s,
            "verbs1 order=le port=1 lid=0 mtu=5 psn=1193046 \
             gid=00000000000000000000ffff7f000001 qpn=17,-,18,19"
        );
        assert_eq!(VerbsEndpoint::decode(&s, 1, 4).unwrap(), e);
        // Unknown fields are tolerated.
        assert_eq!(
            VerbsEndpoint::decode(&format!("{s} future=1"), 1, 4).unwrap(),
            e
        );
    }

    #[test]
    fn malformed_endpoints_are_typed_errors_naming_the_rank() {
        let good = sample().encode();
        let cases = [
            String::new(),
            "127.0.0.1:4000".to_string(),
            good.replace("order=le", "order=xx"),
            good.replace("mtu=5", "mtu=9"),
            good.replace("psn=1193046", "psn=16777216"),
            good.replace("port=1", "port=0"),
            good.replace("gid=0000", "gid=00"),
            good.replace("gid=0000", "gid=zz00"),
            good.replace("qpn=17,-,18,19", "qpn=17,-,18"),
            good.replace("qpn=17,-,18,19", "qpn=17,5,18,19"),
            good.replace("qpn=17,-,18,19", "qpn=17,-,x,19"),
            good.replace("qpn=17,-,18,19", "qpn=17,-,16777216,19"),
            good.replace(" lid=0", ""),
            good.replace(" lid=0", " lid"),
        ];
        for c in cases {
            match VerbsEndpoint::decode(&c, 1, 4) {
                Err(Error::Protocol(m)) => assert!(m.contains("rank 1"), "{m}"),
                other => panic!("{c:?}: {other:?}"),
            }
        }
    }
}
