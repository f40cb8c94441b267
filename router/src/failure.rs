//! How a forwarded call failed, told apart by its status and its cause chain (never by
//! the message alone where a cause exists): refused (nothing ran), lost mid-call (sent
//! again elsewhere unless the caller opted out), or an answer.

use tonic::{Code, Status};

use crate::error::RouterError;

/// How a failed attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The node refused or could not be reached: nothing ran; another replica is tried.
    Refused,
    /// The node or its connection went away while the call was in flight: sent again
    /// elsewhere unless the caller opted out (inference is idempotent).
    MidCall,
    /// An answer (an error the model or the node gave): returned as it is.
    Answer,
}

/// Whether a cause in `s`'s chain is a transport error (I/O, HTTP/2, the connection).
fn transport_cause(s: &Status) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(s);
    while let Some(c) = cause {
        if c.is::<std::io::Error>()
            || c.is::<tonic::transport::Error>()
            || c.is::<h2::Error>()
            || c.is::<hyper::Error>()
        {
            return true;
        }
        cause = c.source();
    }
    false
}

pub(crate) fn failure(s: &Status) -> Failure {
    match s.code() {
        Code::Unavailable => Failure::Refused,
        // The caller cancelling drops this handler before it gets here, so a CANCELLED
        // seen here means the node's connection went away mid-call.
        Code::Cancelled => Failure::MidCall,
        Code::Unknown | Code::Internal if transport_cause(s) || transport_words(s) => {
            Failure::MidCall
        }
        _ => Failure::Answer,
    }
}

/// For statuses whose cause chain was lost on the way (rebuilt from a message): tonic's
/// and hyper's words for a broken connection.
fn transport_words(s: &Status) -> bool {
    let m = s.message().to_ascii_lowercase();
    [
        "transport",
        "connection",
        "connect",
        "broken pipe",
        "reset",
        "h2 protocol",
        "stream closed",
        "eof",
    ]
    .iter()
    .any(|w| m.contains(w))
}

/// Whether the node itself could not be reached (its connection broke, or would not
/// open), as against a node that answered, even with UNAVAILABLE: such a node is
/// ejected from picking for a while (`ejection.rs`).
pub(crate) fn unreachable(s: &Status) -> bool {
    match failure(s) {
        Failure::Answer => false,
        Failure::MidCall => true,
        Failure::Refused => transport_cause(s) || transport_words(s),
    }
}

#[cfg(test)]
fn retryable(s: &Status) -> bool {
    failure(s) != Failure::Answer
}

/// The error a caller gets when the last replica tried failed mid-call: UNAVAILABLE
/// naming the node, never the transport's UNKNOWN.
pub(crate) fn unavailable(model: &str, node: &str, s: &Status, resent: bool) -> Status {
    let why = if resent {
        "and no other replica could take the call"
    } else {
        "and the call asked not to be sent again (troupe.idempotent = false)"
    };
    RouterError::NodeFailed(format!(
        "model '{model}': the replica on node {node} failed while the call was in flight ({}), {why}",
        s.message()
    ))
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gone_replicas_are_retried_and_answers_are_not() {
        for s in [
            Status::unavailable("node restarting"),
            Status::cancelled("connection went away"),
            Status::unknown("transport error"),
            Status::internal("h2 protocol error: stream closed"),
            Status::unknown("Connection reset by peer"),
        ] {
            assert!(retryable(&s), "{s:?}");
        }
        for s in [
            Status::invalid_argument("bad input"),
            Status::resource_exhausted("queue full"),
            Status::deadline_exceeded("late"),
            Status::not_found("no model"),
            Status::internal("model output does not match its config"),
            Status::unknown("the model raised"),
        ] {
            assert!(!retryable(&s), "{s:?}");
        }
    }

    #[test]
    fn transport_failures_are_told_by_their_cause() {
        let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "peer went away");
        let s = Status::from_error(Box::new(reset));
        assert_eq!(failure(&s), Failure::MidCall, "{s:?}");
        assert_eq!(
            failure(&Status::unavailable("restarting")),
            Failure::Refused
        );
        assert_eq!(
            failure(&Status::unknown("the model raised")),
            Failure::Answer
        );
        // The caller gets UNAVAILABLE naming the node, never UNKNOWN.
        let u = unavailable("m", "n7", &s, true);
        assert_eq!(u.code(), Code::Unavailable);
        assert!(u.message().contains("node n7"), "{}", u.message());
        let u = unavailable("m", "n7", &s, false);
        assert!(u.message().contains("troupe.idempotent"), "{}", u.message());
    }

    #[test]
    fn only_a_node_that_cannot_be_reached_is_ejected() {
        let refused = std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out");
        let mut s = Status::unavailable("tcp connect error");
        s.set_source(std::sync::Arc::new(refused));
        assert!(unreachable(&s));
        assert!(unreachable(&Status::unknown("transport error")));
        // A node that answers UNAVAILABLE itself (a model not ready there) is reachable.
        assert!(!unreachable(&Status::unavailable(
            "model 'm' is not ready on this node"
        )));
        assert!(!unreachable(&Status::invalid_argument("bad input")));
    }
}
