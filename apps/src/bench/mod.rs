//! `malt bench`: measurements that print ratios against a baseline measured
//! in the same run.

pub mod gather;
pub mod write;
