//! What the benchmark harnesses in `bench/` share.
//!
//! - `documents`: the seeded generator of the data set that `bench/dump`
//!   loads into SecantusDB and `bench/restore` writes into an archive, so
//!   both measure the same documents.
//! - `process`: the handling of their child processes (each tied to the
//!   harness with `PR_SET_PDEATHSIG`, killed and reaped by its process id
//!   on every path), the clean-up on SIGINT and SIGTERM, where the
//!   `secantusd-rs` server is, and the CPU readings from `/proc`.

pub mod documents;
pub mod process;
