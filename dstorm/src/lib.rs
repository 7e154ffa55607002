//! dstorm — distributed one-sided remote memory.
//!
//! Every rank exposes, for each shared object, a segment in which each peer
//! that may write to it owns a receive queue of slots. Peers push updates
//! with one-sided writes ([`Object::write`]); the owner merges whatever has
//! landed when it chooses ([`Object::poll`]). The control channel
//! ([`Group`]) is used for rendezvous, agreement and barriers only.
//!
//! ```no_run
//! use dstorm::{Group, ObjectSpec};
//! let group = Group::from_env()?;
//! let mut obj = group.create_object(&ObjectSpec::new("model", 4096))?;
//! obj.write_all(&[1u8; 4096], 0)?;
//! let mut buf = vec![0u8; obj.capacity()];
//! while let Some(update) = obj.poll(&mut buf)? {
//!     println!("{} bytes from rank {}", update.len, update.sender);
//! }
//! group.finish()?;
//! # Ok::<(), dstorm::Error>(())
//! ```
//!
//! The modules, bottom to top (each uses only those below it): the error
//! type, the environment, Slurm host lists, the wire format and segment
//! layout; the per-user secret, authentication and configuration; the
//! mapped segment; the transports (shm, tcp, verbs); the fault decisions;
//! the control channel (coordinator, takeover, membership view); objects;
//! the fault monitor; the group. `.ci/layers.py` checks the order.

#![warn(missing_docs)]

pub mod auth;
mod backoff;
pub mod config;
mod control;
mod env;
pub mod error;
pub mod fault;
mod group;
pub mod hostlist;
pub mod layout;
mod monitor;
mod object;
pub mod secret;
mod segment;
mod transport;
pub mod wire;

pub use config::{Config, TransportKind};
pub use control::{CoordinatorHandle, JobState};
pub use error::{Error, Result};
pub use fault::FaultPolicy;
pub use group::{Group, Membership};
pub use object::{Counters, FlowControl, Object, ObjectSpec, PeerCounters, Update};
pub use transport::shm::{
    job_of as shm_job, remove_job_files as remove_shm_files, FILE_PREFIX as SHM_FILE_PREFIX,
};
pub use transport::{Endpoint, RejectCounts};
