//! What the benchmark harnesses in `bench/` share.
//!
//! - `documents`: the seeded generator of the data set that `bench/dump`
//!   loads into SecantusDB and `bench/restore` writes into an archive, so
//!   both measure the same documents.
//! - `process`: the handling of their child processes (each tied to the
//!   harness with `PR_SET_PDEATHSIG`, killed and reaped by its process id
//!   on every path), the clean-up on SIGINT and SIGTERM, where the
//!   `secantusd-rs` server is, and the CPU readings from `/proc`.
//! - `speed`: how fast the cores ran in each phase of a run, for hosts
//!   whose speed changes under a benchmark's feet.

pub mod documents;
pub mod process;
pub mod speed;
