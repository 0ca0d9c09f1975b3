//! What an error response may reveal, and the reference that ties it to
//! its log line.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{SystemTime, UNIX_EPOCH},
};

use axum::http::{header::AUTHORIZATION, HeaderMap};

/// Who may read the database's own error text (which can name hosts, files
/// and tables) in an error response. Everyone else gets the reference id of
/// the log line that holds it.
#[derive(Debug, Clone, Default)]
pub struct DetailPolicy {
    /// Every response shows the details (`--show-details`).
    pub show_details: bool,
    /// Requests carrying `Authorization: Bearer <token>` see the details.
    pub token: Option<String>,
}

impl DetailPolicy {
    /// Whether a request with these headers may read the details.
    pub fn reveals(&self, headers: &HeaderMap) -> bool {
        self.show_details || bearer_matches(headers, self.token.as_deref())
    }
}

/// Whether `headers` carry `Authorization: Bearer <token>`; false when no
/// token is set. Compares without an early exit, so timing does not reveal
/// the token.
pub(crate) fn bearer_matches(headers: &HeaderMap, token: Option<&str>) -> bool {
    let (Some(token), Some(given)) = (
        token,
        headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()),
    ) else {
        return false;
    };
    given.strip_prefix("Bearer ").is_some_and(|given| {
        bool::from(subtle::ConstantTimeEq::ct_eq(
            given.as_bytes(),
            token.as_bytes(),
        ))
    })
}

/// A short id, unique within the process, that ties an error response to
/// its log line: `tg-<unix seconds in hex>-<counter>`.
pub fn reference_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!(
        "tg-{seconds:x}-{:04x}",
        COUNTER.fetch_add(1, Ordering::Relaxed) & 0xffff
    )
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderMap, HeaderValue};

    #[test]
    fn only_the_right_bearer_token_reveals() {
        let policy = super::DetailPolicy {
            show_details: false,
            token: Some("t0ken".into()),
        };
        let mut headers = HeaderMap::new();
        assert!(!policy.reveals(&headers));
        for wrong in [
            "Bearer wrong",
            "Bearer t0ke",
            "Bearer t0ken2",
            "t0ken",
            "Bearer T0KEN",
        ] {
            headers.insert("authorization", HeaderValue::from_static(wrong));
            assert!(!policy.reveals(&headers), "{wrong}");
        }
        headers.insert("authorization", HeaderValue::from_static("Bearer t0ken"));
        assert!(policy.reveals(&headers));
        assert!(!super::DetailPolicy::default().reveals(&headers));
    }
}
