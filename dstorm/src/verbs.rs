//! The RDMA verbs transport (cargo feature `verbs`).

use crate::config::Config;
use crate::error::{Error, Result};
use crate::transport::Transport;
use std::sync::Arc;

/// Builds the verbs transport, or explains why it is not available.
pub(crate) fn transport(_cfg: &Config) -> Result<Arc<dyn Transport>> {
    Err(Error::Unsupported {
        transport: "verbs",
        why: if cfg!(feature = "verbs") {
            "the verbs transport is not implemented yet".into()
        } else {
            "this build has no RDMA support; rebuild with `--features verbs` and see rxe-setup/ for soft-RoCE".into()
        },
    })
}
