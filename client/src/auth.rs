//! The bearer token a [`Client`](crate::Client) sends: [`Bearer`], the interceptor that
//! puts `authorization: Bearer <token>` on every call, and [`Transport`], the channel
//! the generated stubs run on.

use std::fmt;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::ClientError;

/// The metadata key a bearer token travels in.
const AUTHORIZATION: &str = "authorization";

/// What every generated client of a [`Client`](crate::Client) runs on: its channel, with
/// [`Bearer`] adding the token (when one is set) to each call.
pub type Transport = InterceptedService<Channel, Bearer>;

/// Adds `authorization: Bearer <token>` to each call that does not carry an
/// `authorization` of its own; with no token it adds nothing. Its `Debug` never shows
/// the token.
#[derive(Clone, Default)]
pub struct Bearer {
    value: Option<MetadataValue<Ascii>>,
}

impl Bearer {
    /// No token: calls go out as they are (anonymous).
    pub fn none() -> Self {
        Self::default()
    }

    /// `token` as a bearer credential. Surrounding whitespace is dropped; an empty token,
    /// or one with a character outside visible ASCII (spaces, control characters,
    /// non-ASCII), is refused with [`ClientError::Token`], which does not repeat it.
    pub fn new(token: &str) -> Result<Self, ClientError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(ClientError::Token("it is empty".into()));
        }
        if let Some(pos) = token.chars().position(|c| !c.is_ascii_graphic()) {
            return Err(ClientError::Token(format!(
                "character {} is not visible ASCII (no spaces, control or non-ASCII characters)",
                pos + 1
            )));
        }
        let mut value = MetadataValue::try_from(format!("Bearer {token}"))
            .map_err(|_| ClientError::Token("not a valid metadata value".into()))?;
        // Never indexed by HPACK, shown as "Sensitive" by http's Debug.
        value.set_sensitive(true);
        Ok(Self { value: Some(value) })
    }

    /// Whether a token is set.
    pub fn is_set(&self) -> bool {
        self.value.is_some()
    }
}

impl fmt::Debug for Bearer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = if self.is_set() { "<redacted>" } else { "none" };
        f.debug_struct("Bearer").field("token", &shown).finish()
    }
}

impl Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.value
            && !request.metadata().contains_key(AUTHORIZATION)
        {
            request.metadata_mut().insert(AUTHORIZATION, v.clone());
        }
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(mut b: Bearer, req: tonic::Request<()>) -> Option<String> {
        let out = b.call(req).unwrap();
        out.metadata()
            .get(AUTHORIZATION)
            .map(|v| v.to_str().unwrap().to_string())
    }

    #[test]
    fn adds_the_token_to_every_call() {
        let b = Bearer::new("  s3cret-token\n").unwrap();
        assert!(b.is_set());
        assert_eq!(
            sent(b.clone(), tonic::Request::new(())).as_deref(),
            Some("Bearer s3cret-token")
        );
        assert_eq!(
            sent(b, tonic::Request::new(())).as_deref(),
            Some("Bearer s3cret-token"),
            "again on the next call"
        );
    }

    #[test]
    fn no_token_adds_nothing() {
        assert_eq!(sent(Bearer::none(), tonic::Request::new(())), None);
    }

    #[test]
    fn a_call_s_own_authorization_wins() {
        let mut req = tonic::Request::new(());
        req.metadata_mut()
            .insert(AUTHORIZATION, "Bearer other".parse().unwrap());
        let b = Bearer::new("mine").unwrap();
        assert_eq!(sent(b, req).as_deref(), Some("Bearer other"));
    }

    #[test]
    fn invalid_tokens_are_refused_without_repeating_them() {
        for bad in [
            "",
            "   ",
            "has space",
            "tab\there",
            "nl\nin",
            "naïve",
            "\u{7f}x",
        ] {
            let e = Bearer::new(bad).unwrap_err();
            assert!(matches!(e, ClientError::Token(_)), "{bad:?}: {e}");
            let msg = e.to_string();
            assert!(msg.contains("bearer token"), "{msg}");
            if bad.trim().len() > 2 {
                assert!(!msg.contains(bad.trim()), "{msg} repeats the token");
            }
        }
    }

    #[test]
    fn debug_never_shows_the_token() {
        let b = Bearer::new("s3cret-token").unwrap();
        let shown = format!("{b:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("redacted"), "{shown}");
        assert!(format!("{:?}", Bearer::none()).contains("none"));
    }
}
