//! The failures a client command reports with an exit status of their own,
//! so scripts can tell them apart without reading the message.
//!
//! | status | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | any other failure (bad input, local files, another API error) |
//! | 2 | the command line itself is wrong (clap) |
//! | 3 | mongobak cannot be reached, or the connection broke off |
//! | 4 | authentication failed (`AuthFailure.*`) or no credentials were found |
//! | 5 | no such instance, backup or replica set |
//! | 6 | a downloaded file does not match its published SHA-256 |
//! | 7 | the backup or the packaging of a download failed on the server |
//!
//! `main` prints every error as one line, `mongobak: <reason>`, and finds
//! the status by looking for a [`Failure`] in the error's chain.

use std::path::PathBuf;

/// The table above in one paragraph, for `--help`.
pub const EXIT_STATUSES: &str = "Exit status: 0 success, 1 other failure, 2 usage, \
    3 server unreachable, 4 authentication failed, 5 no such instance or backup, \
    6 checksum mismatch, 7 the backup or packaging failed on the server.";

/// A failure with its own exit status.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// No answer from the endpoint, or the connection broke off.
    #[error("cannot reach mongobak at {endpoint}: {reason}")]
    Unreachable {
        /// The endpoint or URL that did not answer.
        endpoint: String,
        /// The innermost cause, and what to do about it.
        reason: String,
    },
    /// A download stopped part way; what arrived is kept for a resume.
    #[error("the download of {item} stopped at byte {at} of {size}: {reason}; run the same command again to resume")]
    Interrupted {
        /// What was being downloaded.
        item: String,
        /// Bytes on disk.
        at: u64,
        /// The file's size.
        size: u64,
        /// The innermost cause.
        reason: String,
    },
    /// The API refused the credentials.
    #[error("authentication failed: {0}")]
    Auth(ApiRefusal),
    /// No credentials to sign with.
    #[error("no credentials: {0}")]
    NoCredentials(String),
    /// The API knows no such instance, backup or replica set.
    #[error("{0}")]
    NotFound(ApiRefusal),
    /// Something the client looked for itself was not there.
    #[error("{0}")]
    Missing(String),
    /// A downloaded file's SHA-256 differs from the published one.
    #[error(
        "checksum mismatch: {name} has SHA-256 {actual} but the server published {expected}; \
         the file was kept aside as {} and is not usable",
        kept.display()
    )]
    ChecksumMismatch {
        /// The file's name.
        name: String,
        /// SHA-256 of the bytes received.
        actual: String,
        /// SHA-256 the server published.
        expected: String,
        /// Where the bad bytes are now.
        kept: PathBuf,
    },
    /// A backup or download task failed on the server.
    #[error("{0}")]
    ServerSide(String),
    /// Any other API error.
    #[error("{0}")]
    Api(ApiRefusal),
}

impl Failure {
    /// The exit status of this failure (see the module documentation).
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Unreachable { .. } | Failure::Interrupted { .. } => 3,
            Failure::Auth(_) | Failure::NoCredentials(_) => 4,
            Failure::NotFound(_) | Failure::Missing(_) => 5,
            Failure::ChecksumMismatch { .. } => 6,
            Failure::ServerSide(_) => 7,
            Failure::Api(_) => 1,
        }
    }

    /// Classifies an API error by its code.
    pub fn from_api(refusal: ApiRefusal) -> Failure {
        let code = refusal.code.as_str();
        if code.starts_with("AuthFailure") {
            Failure::Auth(refusal)
        } else if matches!(
            code,
            "InvalidParameterValue.NotFoundInstance"
                | "InvalidParameterValue.BackupFileNotFound"
                | "InvalidParameterValue.ReplicaNotFound"
        ) || code.starts_with("ResourceNotFound")
        {
            Failure::NotFound(refusal)
        } else {
            Failure::Api(refusal)
        }
    }
}

/// An error answer of the API: its code, message and RequestId.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code}: {message} (RequestId {request_id})")]
pub struct ApiRefusal {
    /// `Error.Code`, such as `AuthFailure.SignatureFailure`.
    pub code: String,
    /// `Error.Message`.
    pub message: String,
    /// `RequestId`, for the server's log.
    pub request_id: String,
}

/// The exit status for `err`: the first [`Failure`] in its chain, else 1.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    err.chain()
        .find_map(|e| e.downcast_ref::<Failure>())
        .map_or(1, Failure::exit_code)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(code: &str) -> ApiRefusal {
        ApiRefusal {
            code: code.into(),
            message: "m".into(),
            request_id: "r".into(),
        }
    }

    #[test]
    fn api_codes_map_to_their_status() {
        for (code, status) in [
            ("AuthFailure.SignatureFailure", 4),
            ("AuthFailure.SecretIdNotFound", 4),
            ("InvalidParameterValue.NotFoundInstance", 5),
            ("InvalidParameterValue.BackupFileNotFound", 5),
            ("InvalidParameterValue.ReplicaNotFound", 5),
            ("ResourceNotFound.InstanceNotFundError", 5),
            ("InvalidParameter", 1),
            ("RequestLimitExceeded", 1),
        ] {
            assert_eq!(
                Failure::from_api(refusal(code)).exit_code(),
                status,
                "{code}"
            );
        }
    }

    #[test]
    fn the_status_is_found_under_context() {
        let err = anyhow::Error::new(Failure::Missing("x".into())).context("while downloading");
        assert_eq!(exit_code(&err), 5);
        assert_eq!(exit_code(&anyhow::anyhow!("plain")), 1);
    }
}
