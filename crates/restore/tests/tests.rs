//! Restores into real SecantusDB servers (from `mongobak-testkit`): the
//! real archives of the shared test data, round trips of a seeded server
//! through a mongobak backup, oplog replay, and the options.

mod oplog;
mod options;
mod real_archives;
mod round_trip;
mod util;
