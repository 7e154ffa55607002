//! Choosing the RDMA device, port and GID.

use super::settings::Settings;
use crate::error::{Error, Result};
use sideway::ibverbs::device::{DeviceInfo, DeviceList};
use sideway::ibverbs::device_context::DeviceContext;
use std::sync::Arc;

/// `ibv_port_state` ACTIVE.
const PORT_ACTIVE: u32 = 4;
/// `IBV_LINK_LAYER_ETHERNET`.
const LINK_ETHERNET: u8 = 2;
/// `ibv_query_gid_type` (sysfs form) for RoCEv2.
const GID_TYPE_ROCE_V2: u32 = 1;

/// How to set up soft-RoCE, appended to every "no device" message.
pub(crate) const RXE_ADVICE: &str = "on a Linux host whose kernel has rdma_rxe run \
`sudo rxe-setup/rxe-up.sh` (soft-RoCE on lo); on any other Linux host run the job \
inside a soft-RoCE guest with `rxe-setup/in-guest.sh COMMAND...`; \
see rxe-setup/README.md";

/// An opened device port and the address this rank uses on it.
#[derive(Debug)]
pub(crate) struct Port {
    pub ctx: Arc<DeviceContext>,
    pub device: String,
    pub port: u8,
    pub lid: u16,
    /// Link layer is Ethernet (RoCE): addresses need a GRH.
    pub ethernet: bool,
    /// Active MTU (verbs enum value, 1..=5).
    pub mtu: u32,
    pub gid_index: u32,
    pub gid: [u8; 16],
}

fn unsupported(why: String) -> Error {
    Error::Unsupported {
        transport: "verbs",
        why,
    }
}

fn is_v4_mapped(g: &[u8; 16]) -> bool {
    g[..10].iter().all(|b| *b == 0) && g[10] == 0xff && g[11] == 0xff
}

/// Active ports of `ctx`, in order.
fn active_ports(ctx: &DeviceContext) -> Vec<(u8, sideway::ibverbs::device_context::PortAttr)> {
    let Ok(dev) = ctx.query_device() else {
        return Vec::new();
    };
    (1..=dev.phys_port_cnt())
        .filter_map(|p| ctx.query_port(p).ok().map(|a| (p, a)))
        .filter(|(_, a)| a.attr.state == PORT_ACTIVE)
        .collect()
}

/// Opens the device and port the settings ask for (or the first with an
/// active port) and picks the GID.
pub(crate) fn open(s: &Settings) -> Result<Port> {
    let list = DeviceList::new().map_err(|e| {
        let cause = std::error::Error::source(&e)
            .map(|c| format!(": {c}"))
            .unwrap_or_default();
        unsupported(format!(
            "cannot list RDMA devices ({e}{cause}): this kernel has no RDMA device \
             or libibverbs (rdma-core) is missing; {RXE_ADVICE}"
        ))
    })?;
    let names: Vec<String> = list.iter().map(|d| d.name()).collect();
    if names.is_empty() {
        return Err(unsupported(format!("no RDMA device found; {RXE_ADVICE}")));
    }
    let mut tried = Vec::new();
    for dev in list.iter() {
        let name = dev.name();
        if s.device.as_ref().is_some_and(|want| *want != name) {
            continue;
        }
        let ctx = match dev.open() {
            Ok(c) => c,
            Err(e) => {
                tried.push(format!("{name}: cannot open ({e})"));
                continue;
            }
        };
        let ports = active_ports(&ctx);
        let chosen = match s.port {
            Some(p) => ports.into_iter().find(|(n, _)| *n == p),
            None => ports.into_iter().next(),
        };
        let Some((port, attr)) = chosen else {
            tried.push(match s.port {
                Some(p) => format!("{name}: port {p} is not active"),
                None => format!("{name}: no active port"),
            });
            continue;
        };
        let ethernet = attr.attr.link_layer == LINK_ETHERNET;
        let (gid_index, gid) = pick_gid(&ctx, &name, port, attr.attr.gid_tbl_len, ethernet, s)?;
        return Ok(Port {
            ctx,
            device: name,
            port,
            lid: attr.attr.lid,
            ethernet,
            mtu: attr.attr.active_mtu.clamp(1, 5),
            gid_index,
            gid,
        });
    }
    Err(unsupported(match &s.device {
        Some(want) if !names.contains(want) => format!(
            "MALT_RDMA_DEVICE={want:?} is not among the RDMA devices {names:?}; {RXE_ADVICE}"
        ),
        _ => format!("no usable RDMA port ({}); {RXE_ADVICE}", tried.join("; ")),
    }))
}

fn pick_gid(
    ctx: &DeviceContext,
    name: &str,
    port: u8,
    table_len: i32,
    ethernet: bool,
    s: &Settings,
) -> Result<(u32, [u8; 16])> {
    if let Some(i) = s.gid_index {
        let g = ctx.query_gid(port, i).map_err(|e| {
            Error::Config(format!(
                "MALT_RDMA_GID_INDEX={i}: {name} port {port} has no such GID ({e})"
            ))
        })?;
        if g.raw.iter().all(|b| *b == 0) {
            return Err(Error::Config(format!(
                "MALT_RDMA_GID_INDEX={i}: GID {i} of {name} port {port} is empty"
            )));
        }
        return Ok((i, g.raw));
    }
    let mut entries = Vec::new();
    for i in 0..table_len.max(0) as u32 {
        let Ok(g) = ctx.query_gid(port, i) else {
            continue;
        };
        if g.raw.iter().all(|b| *b == 0) {
            continue;
        }
        let v2 = ctx.query_gid_type(port, i).ok() == Some(GID_TYPE_ROCE_V2);
        entries.push((i, g.raw, v2));
    }
    let pick = if ethernet {
        // RoCEv2 with an IPv4 address routes like IP; then any RoCEv2
        // global address; then whatever there is.
        entries
            .iter()
            .find(|(_, g, v2)| *v2 && is_v4_mapped(g))
            .or_else(|| {
                entries
                    .iter()
                    .find(|(_, g, v2)| *v2 && !(g[0] == 0xfe && g[1] & 0xc0 == 0x80))
            })
            .or_else(|| entries.first())
    } else {
        entries.first()
    };
    pick.map(|(i, g, _)| (*i, *g)).ok_or_else(|| {
        unsupported(format!(
            "{name} port {port} has no GID (is the netdev under the rxe device up with an address?); {RXE_ADVICE}"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_ipv4_mapped_gids() {
        let mut g = [0u8; 16];
        g[10] = 0xff;
        g[11] = 0xff;
        g[12..].copy_from_slice(&[10, 0, 0, 1]);
        assert!(is_v4_mapped(&g));
        g[0] = 0xfe;
        assert!(!is_v4_mapped(&g));
    }
}
