//! Memory handed to the device: anonymous mappings accessed only through
//! raw pointers, and such a mapping registered with a protection domain
//! for local access (a peer's staging memory, the receive buffers), which
//! deregisters itself before it unmaps.

use crate::error::{Error, Result};
use sideway::ibverbs::memory_region::MemoryRegion;
use sideway::ibverbs::protection_domain::ProtectionDomain;
use sideway::ibverbs::AccessFlags;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// Anonymous page-aligned memory handed to the device, accessed only
/// through raw pointers.
#[derive(Debug)]
pub(crate) struct DmaBuf {
    map: memmap2::MmapRaw,
}

impl DmaBuf {
    pub fn new(len: usize) -> io::Result<DmaBuf> {
        let m = memmap2::MmapOptions::new().len(len.max(1)).map_anon()?;
        Ok(DmaBuf {
            map: memmap2::MmapRaw::from(m),
        })
    }

    pub fn ptr(&self) -> *mut u8 {
        self.map.as_mut_ptr()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn addr(&self) -> u64 {
        self.ptr() as u64
    }
}

/// A [`DmaBuf`] registered for local access: the device may read it (sent
/// bytes) and write it (received messages) under [`lkey`](Self::lkey).
#[derive(Debug)]
pub(crate) struct Registered {
    /// The registration; `None` only while dropping (see `Drop`).
    mr: Option<Arc<MemoryRegion>>,
    lkey: u32,
    buf: DmaBuf,
}

impl Registered {
    /// Registers `buf` with `pd`; `what` names it in the error.
    pub fn new(pd: &Arc<ProtectionDomain>, buf: DmaBuf, what: &str) -> Result<Registered> {
        // SAFETY: `buf` is a private anonymous mapping that the returned
        // value owns, and its `Drop` deregisters the region before the
        // mapping is unmapped; on error nothing stays registered.
        let mr = unsafe { pd.reg_mr(buf.addr() as usize, buf.len(), AccessFlags::LocalWrite) }
            .map_err(|e| mem_err(what, e))?;
        Ok(Registered {
            lkey: mr.lkey(),
            mr: Some(mr),
            buf,
        })
    }

    pub fn lkey(&self) -> u32 {
        self.lkey
    }

    pub fn ptr(&self) -> *mut u8 {
        self.buf.ptr()
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn addr(&self) -> u64 {
        self.buf.addr()
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        // The device must lose access before the pages go: deregister
        // (this value holds the only reference to the region), then let
        // `buf` unmap.
        drop(self.mr.take());
    }
}

/// The error of a failed memory registration.
pub(crate) fn mem_err(what: &str, e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::Segment {
        path: PathBuf::from(format!("verbs:{what}")),
        op: "register memory with the RDMA device (raise `ulimit -l` if this is ENOMEM)",
        source: io::Error::other(e),
    }
}
