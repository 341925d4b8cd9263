//! The Tencent Cloud error codes mongobak answers with.
//!
//! Every failure a client can see is one variant of [`ApiError`]; its wire
//! code (`code()`) is what the official SDKs put into their exception, so the
//! spelling of each code is part of our promise (see `docs/protocol.md`
//! §4 and the README's Errors section). Messages name the offending parameter
//! and never echo secrets, SQL, paths or URIs.

use std::borrow::Cow;
use std::fmt;

/// Most characters of a request value that an error message or a log line
/// repeats; [`clip`] cuts longer ones.
pub const CLIP_CHARS: usize = 200;

/// Most characters of an error message, whatever it repeats: a bound for
/// the answer and the log line even where a value is not clipped.
const MAX_MESSAGE_CHARS: usize = 1024;

/// `value` cut to [`CLIP_CHARS`] characters, with a marker saying how many
/// were left out: request values reach error messages and log lines, and a
/// client may send megabytes.
pub fn clip(value: &str) -> Cow<'_, str> {
    clip_to(value, CLIP_CHARS)
}

fn clip_to(value: &str, max: usize) -> Cow<'_, str> {
    match value.char_indices().nth(max) {
        None => Cow::Borrowed(value),
        Some((cut, _)) => {
            let left_out = value[cut..].chars().count();
            Cow::Owned(format!("{}...[{left_out} more characters]", &value[..cut]))
        }
    }
}

/// An error answered to an API client, rendered into the standard envelope
/// `{"Response": {"Error": {"Code", "Message"}, "RequestId"}}` with HTTP 200.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    kind: ErrorKind,
    message: String,
}

/// The error codes, one variant per wire code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// `AuthFailure.InvalidAuthorization`: the Authorization header is malformed.
    InvalidAuthorization,
    /// `AuthFailure.SecretIdNotFound`: unknown or disabled SecretId.
    SecretIdNotFound,
    /// `AuthFailure.SignatureExpire`: timestamp too far from the server clock.
    SignatureExpire,
    /// `AuthFailure.SignatureFailure`: the signature does not match.
    SignatureFailure,
    /// `AuthFailure.TokenFailure`: a temporary-credential token was sent;
    /// mongobak issues none, so none is valid.
    TokenFailure,
    /// `FailedOperation`: the deployment itself could not be read (a live
    /// listing found it unreachable, or it refused).
    FailedOperation,
    /// `FailedOperation.FlashbackByKeyNotOpen`: flashback by key needs the
    /// continuous oplog backup, which is off (`[pitr] enabled = false`).
    FlashbackByKeyNotOpen,
    /// `InternalError`: a server fault; details are logged, not returned.
    InternalError,
    /// `InternalError.CheckAppIdFailed`: the caller's AppId cannot be verified.
    CheckAppIdFailed,
    /// `InvalidAction`: no such action.
    InvalidAction,
    /// `InvalidParameter`: a parameter has the wrong type or shape.
    InvalidParameter,
    /// `InvalidParameter.PermissionDenied`: a sub-account's policy forbids it.
    PermissionDenied,
    /// `InvalidParameterValue`: a parameter's value is outside its set or range.
    InvalidParameterValue,
    /// `InvalidParameterValue.BackupFileNotFound`: no usable backup by that name.
    BackupFileNotFound,
    /// `InvalidParameterValue.ReplicaNotFound`: the instance has no such replica set.
    ReplicaNotFound,
    /// `InvalidParameterValue.StartTimeNotBeforeThanEndTime`.
    StartAfterEnd,
    /// `InvalidParameterValue.ClusterTypeError`.
    ClusterTypeError,
    /// `InvalidParameterValue.IllegalInstanceStatus`.
    IllegalInstanceStatus,
    /// `InvalidParameterValue.LimitParaOutOfRange`.
    LimitOutOfRange,
    /// `InvalidParameterValue.NotFoundInstance`.
    NotFoundInstance,
    /// `InvalidParameterValue.OffsetParaOutOfRange`.
    OffsetOutOfRange,
    /// `InvalidParameterValue.StatusAbnormal`: the object's state forbids it.
    StatusAbnormal,
    /// `InvalidParameterValue.TimeFormatErr`.
    TimeFormatErr,
    /// `InvalidParameterValue.QueryTimeOutOfRange`: a time outside what
    /// can be served (a restore time outside the restorable window).
    QueryTimeOutOfRange,
    /// `MissingParameter`: a required parameter is absent.
    MissingParameter,
    /// `NoSuchVersion`: the Version is not `2019-07-25`.
    NoSuchVersion,
    /// `RequestLimitExceeded`: the per-account, per-action rate was exceeded.
    RequestLimitExceeded,
    /// `RequestSizeLimitExceeded`: the body is larger than the configured limit.
    RequestSizeLimitExceeded,
    /// `UnknownParameter`: a parameter this action does not define.
    UnknownParameter,
    /// `UnsupportedOperation`: a real mongodb action that mongobak does not provide.
    UnsupportedOperation,
    /// `UnsupportedProtocol`: an HTTP method other than GET or POST.
    UnsupportedProtocol,
    /// `UnsupportedRegion`: a region mongobak does not serve.
    UnsupportedRegion,
}

impl ErrorKind {
    /// The wire code, exactly as the official SDKs expect it.
    pub fn code(self) -> &'static str {
        use ErrorKind::*;
        match self {
            InvalidAuthorization => "AuthFailure.InvalidAuthorization",
            SecretIdNotFound => "AuthFailure.SecretIdNotFound",
            SignatureExpire => "AuthFailure.SignatureExpire",
            SignatureFailure => "AuthFailure.SignatureFailure",
            TokenFailure => "AuthFailure.TokenFailure",
            FailedOperation => "FailedOperation",
            FlashbackByKeyNotOpen => "FailedOperation.FlashbackByKeyNotOpen",
            InternalError => "InternalError",
            CheckAppIdFailed => "InternalError.CheckAppIdFailed",
            InvalidAction => "InvalidAction",
            InvalidParameter => "InvalidParameter",
            PermissionDenied => "InvalidParameter.PermissionDenied",
            InvalidParameterValue => "InvalidParameterValue",
            BackupFileNotFound => "InvalidParameterValue.BackupFileNotFound",
            ReplicaNotFound => "InvalidParameterValue.ReplicaNotFound",
            StartAfterEnd => "InvalidParameterValue.StartTimeNotBeforeThanEndTime",
            ClusterTypeError => "InvalidParameterValue.ClusterTypeError",
            IllegalInstanceStatus => "InvalidParameterValue.IllegalInstanceStatus",
            LimitOutOfRange => "InvalidParameterValue.LimitParaOutOfRange",
            NotFoundInstance => "InvalidParameterValue.NotFoundInstance",
            OffsetOutOfRange => "InvalidParameterValue.OffsetParaOutOfRange",
            StatusAbnormal => "InvalidParameterValue.StatusAbnormal",
            TimeFormatErr => "InvalidParameterValue.TimeFormatErr",
            QueryTimeOutOfRange => "InvalidParameterValue.QueryTimeOutOfRange",
            MissingParameter => "MissingParameter",
            NoSuchVersion => "NoSuchVersion",
            RequestLimitExceeded => "RequestLimitExceeded",
            RequestSizeLimitExceeded => "RequestSizeLimitExceeded",
            UnknownParameter => "UnknownParameter",
            UnsupportedOperation => "UnsupportedOperation",
            UnsupportedProtocol => "UnsupportedProtocol",
            UnsupportedRegion => "UnsupportedRegion",
        }
    }
}

impl ApiError {
    /// An error of `kind` with a message for the user.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        let message = message.into();
        let message = match clip_to(&message, MAX_MESSAGE_CHARS) {
            Cow::Borrowed(_) => message,
            Cow::Owned(clipped) => clipped,
        };
        ApiError { kind, message }
    }

    /// The error's kind.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The wire code.
    pub fn code(&self) -> &'static str {
        self.kind.code()
    }

    /// The message shown to the user.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// `MissingParameter` naming the absent parameter.
    pub fn missing(name: &str) -> Self {
        Self::new(
            ErrorKind::MissingParameter,
            format!(
                "The request is missing the required parameter `{}`.",
                clip(name)
            ),
        )
    }

    /// `InvalidParameter`: `name` is not of the expected form.
    pub fn invalid(name: &str, expected: &str) -> Self {
        Self::new(
            ErrorKind::InvalidParameter,
            format!(
                "The parameter `{}` is invalid: expected {expected}.",
                clip(name)
            ),
        )
    }

    /// `InvalidParameterValue` (or one of its sub-codes) naming the parameter.
    pub fn bad_value(kind: ErrorKind, name: &str, detail: impl fmt::Display) -> Self {
        Self::new(
            kind,
            format!(
                "The value of the parameter `{}` is invalid: {detail}.",
                clip(name)
            ),
        )
    }

    /// `InvalidParameterValue` naming the parameter: [`ApiError::bad_value`]
    /// with the plain code.
    pub fn invalid_value(name: &str, detail: impl fmt::Display) -> Self {
        Self::bad_value(ErrorKind::InvalidParameterValue, name, detail)
    }

    /// `InternalError`; the cause is logged by the caller, never returned.
    pub fn internal() -> Self {
        Self::new(
            ErrorKind::InternalError,
            "An internal error occurred; the server log has the details.",
        )
    }

    /// `InvalidParameterValue.NotFoundInstance`.
    pub fn instance_not_found(id: &str) -> Self {
        Self::new(
            ErrorKind::NotFoundInstance,
            format!("The instance `{}` was not found.", clip(id)),
        )
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code(), self.message)
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_values_are_clipped_with_a_marker() {
        assert_eq!(clip("short"), "short");
        let exact = "é".repeat(CLIP_CHARS);
        assert_eq!(clip(&exact), exact.as_str());
        let long = "é".repeat(100_000);
        let clipped = clip(&long);
        assert!(clipped.starts_with(&"é".repeat(CLIP_CHARS)));
        assert!(clipped.ends_with("...[99800 more characters]"), "{clipped}");
    }

    #[test]
    fn messages_are_bounded_whatever_they_repeat() {
        let name = "X".repeat(1_000_000);
        let e = ApiError::invalid_value(&name, "no");
        assert!(e.message().chars().count() < 300, "{}", e.message().len());
        let e = ApiError::new(ErrorKind::InvalidAction, "Y".repeat(1_000_000));
        assert!(e.message().chars().count() < MAX_MESSAGE_CHARS + 40);
        assert!(e.message().ends_with("more characters]"));
    }
}
