//! The memory of signatures already used, against replayed and re-aimed
//! requests.
//!
//! The official clients sign only `content-type;host` (TC3) and the
//! parameters (v1), so a captured request stays valid for the whole clock
//! window, and a captured TC3 request can be sent again with another
//! `X-TC-Action`, which no signature covers. Every signature that passed
//! verification is therefore remembered, with the action of its first use,
//! until its timestamp leaves the clock window; a later request with the
//! same signature is refused when its action changes state or differs from
//! the first use. An identical read-only request (a client polling twice in
//! one second) still passes. The rules are written out in
//! `docs/security.md`.
//!
//! On PostgreSQL the memory is shared by every node of a cluster (an
//! unlogged table, one round trip per request, see
//! `mongobak_catalog::signatures`); on SQLite (one node) it lives in this
//! process. If the database cannot be asked, this node's own memory decides
//! rather than refusing every call. A signature is remembered only once the
//! request has passed the rate limit, so the number of entries is bounded
//! by the rate limits times the length of the clock window.

use std::collections::HashMap;
use std::sync::Mutex;

use mongobak_catalog::{Catalog, SignatureUse};

use crate::actions::Action;
use crate::error::{ApiError, ErrorKind};

/// Sweep expired entries once the map has grown to this size, and then
/// each time it doubles since the last sweep.
const SWEEP_AT_LEAST: usize = 4096;

/// A signature's fingerprint: SHA-256 of its style, SecretId and value.
pub type Fingerprint = [u8; 32];

/// Remembers signatures for the length of the clock window.
#[derive(Debug, Default)]
pub struct ReplayGuard {
    local: Mutex<LocalMemory>,
}

#[derive(Debug, Default)]
struct LocalMemory {
    /// Fingerprint -> (action of the first use, unix second it expires).
    seen: HashMap<Fingerprint, (Action, i64)>,
    /// Size at which the next sweep runs.
    sweep_at: usize,
}

impl ReplayGuard {
    /// Records a use of `fingerprint` for `action` at `now` (unix seconds),
    /// remembered until `expires_at`, and refuses it when it replays an
    /// earlier use: in the cluster-wide memory when `catalog` keeps one,
    /// else in this process's.
    pub async fn check(
        &self,
        catalog: &Catalog,
        fingerprint: &Fingerprint,
        action: Action,
        now: i64,
        expires_at: i64,
    ) -> Result<(), ApiError> {
        let first = match catalog
            .signatures()
            .remember(fingerprint, action.name(), expires_at, now)
            .await
        {
            Ok(Some(SignatureUse::First)) => None,
            Ok(Some(SignatureUse::SeenWith(name))) => {
                Some(Action::ALL.iter().copied().find(|a| a.name() == name))
            }
            Ok(None) => self.remember_locally(fingerprint, action, now, expires_at),
            Err(e) => {
                tracing::warn!(error = %e, "cannot reach the shared signature memory; this node's own memory applies");
                self.remember_locally(fingerprint, action, now, expires_at)
            }
        };
        verdict(first, action)
    }

    /// Records the use in this process's memory; `None` when the
    /// fingerprint is new (or its entry expired), else the action of its
    /// first use.
    fn remember_locally(
        &self,
        fingerprint: &Fingerprint,
        action: Action,
        now: i64,
        expires_at: i64,
    ) -> Option<Option<Action>> {
        let mut memory = self.local.lock().unwrap_or_else(|e| e.into_inner());
        if memory.seen.len() >= memory.sweep_at {
            memory.seen.retain(|_, (_, expiry)| *expiry > now);
            memory.sweep_at = (memory.seen.len() * 2).max(SWEEP_AT_LEAST);
        }
        match memory.seen.get(fingerprint) {
            Some((first, expiry)) if *expiry > now => Some(Some(*first)),
            _ => {
                memory.seen.insert(*fingerprint, (action, expires_at));
                None
            }
        }
    }
}

/// Whether a use of a signature for `action` passes, given its earlier use:
/// `None` when there was none, `Some(None)` when it was for an action this
/// version does not know.
fn verdict(first: Option<Option<Action>>, action: Action) -> Result<(), ApiError> {
    match first {
        None => Ok(()),
        Some(Some(first)) if first == action && !action.changes_state() => Ok(()),
        Some(first) => Err(replayed(action, first)),
    }
}

fn replayed(action: Action, first: Option<Action>) -> ApiError {
    let message = match first {
        Some(first) if first != action => format!(
            "The request signature was already used for {} and is replayed here for {}; \
             sign every request anew.",
            first.name(),
            action.name()
        ),
        _ => format!(
            "The request signature was already used; {} changes state, so a replayed request \
             is refused. Sign every request anew.",
            action.name()
        ),
    };
    ApiError::new(ErrorKind::SignatureFailure, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(guard: &ReplayGuard, key: u8, action: Action, now: i64) -> Option<Option<Action>> {
        guard.remember_locally(&[key; 32], action, now, now + 301)
    }

    #[test]
    fn a_signature_is_remembered_until_it_expires() {
        let guard = ReplayGuard::default();
        assert_eq!(local(&guard, 1, Action::DescribeDBBackups, 1000), None);
        assert_eq!(
            local(&guard, 1, Action::CreateBackupDBInstance, 1300),
            Some(Some(Action::DescribeDBBackups))
        );
        // Expired at 1301: a new first use.
        assert_eq!(local(&guard, 1, Action::CreateBackupDBInstance, 1301), None);
        assert_eq!(local(&guard, 2, Action::DescribeDBBackups, 1000), None);
    }

    #[test]
    fn sweeps_keep_the_memory_bounded() {
        let guard = ReplayGuard::default();
        for i in 0..100_000u32 {
            let mut key = [0u8; 32];
            key[..4].copy_from_slice(&i.to_le_bytes());
            // One new signature a second, each kept 301 s: at most 301
            // live at any time.
            let now = i64::from(i);
            guard.remember_locally(&key, Action::DescribeDBBackups, now, now + 301);
        }
        let memory = guard.local.lock().unwrap();
        assert!(
            memory.seen.len() < 2 * SWEEP_AT_LEAST,
            "{}",
            memory.seen.len()
        );
    }

    #[test]
    fn what_is_refused() {
        use Action::*;
        assert!(verdict(None, CreateBackupDBInstance).is_ok());
        assert!(verdict(Some(Some(DescribeDBBackups)), DescribeDBBackups).is_ok());
        for (first, now) in [
            (Some(DescribeDBBackups), CreateBackupDBInstance),
            (Some(DescribeDBBackups), DescribeDBInstances),
            (Some(CreateBackupDBInstance), CreateBackupDBInstance),
            (Some(SetBackupRules), SetBackupRules),
            (None, DescribeDBBackups),
        ] {
            let error = verdict(Some(first), now).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::SignatureFailure);
            assert!(error.message().contains("replayed"), "{}", error.message());
        }
    }
}
