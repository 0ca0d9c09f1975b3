//! The responses the guard gives instead of the application's: 503 with
//! the facts and the recovery, 404 for unknown hosts, 400 for malformed
//! ones. HTML for browsers, JSON for clients that prefer it. Pages are maud
//! templates, so every value is escaped; no external assets.

use axum::{
    body::Body,
    http::{header, HeaderValue, StatusCode},
    response::Response,
};
use maud::{html, Markup, PreEscaped, DOCTYPE};
use serde_json::json;
use tenantgate::{migrations::MigrationRef, readiness::BlockReason};

use crate::{recovery_text::RecoveryText, snapshot::TenantEntry};

const STYLE: &str = "body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f6f7f9;color:#1d2433}\
main{max-width:42rem;margin:0 auto;padding:1.5rem}h1{font-size:1.4rem;margin:.2rem 0 1rem}\
.card{background:#fff;border:1px solid #dde1e8;border-radius:.5rem;padding:1rem 1.25rem;margin:1rem 0}\
dl{display:grid;grid-template-columns:max-content 1fr;gap:.35rem 1rem;margin:0}dt{color:#5a6478}dd{margin:0;overflow-wrap:anywhere}\
code,pre{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.9rem}pre{background:#1d2433;color:#f6f7f9;padding:.75rem;border-radius:.35rem;overflow-x:auto;white-space:pre-wrap}\
.tag{display:inline-block;background:#fdecea;color:#a3261b;border-radius:.25rem;padding:.05rem .45rem;font-size:.85rem}\
ul{padding-left:1.2rem}small{color:#5a6478}h2{font-size:1.05rem;margin:0 0 .5rem}";

fn page(status: StatusCode, title: &str, body: Markup) -> Response {
    let html = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                style { (PreEscaped(STYLE)) }
            }
            body { main { (body) } }
        }
    };
    let mut response = Response::new(Body::from(html.into_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

fn json_response(status: StatusCode, value: serde_json::Value) -> Response {
    let mut response = Response::new(Body::from(value.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn with_retry_after(mut response: Response, seconds: u64) -> Response {
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

/// What a blocked-tenant page shows.
pub(crate) struct BlockedPage<'a> {
    pub(crate) entry: &'a TenantEntry,
    /// Where the tenant lives: `schema "acme"`, `file tenants/acme.db`.
    pub(crate) container: &'a str,
    pub(crate) host: &'a str,
    pub(crate) reference: &'a str,
    pub(crate) show_details: bool,
    pub(crate) retry_after: u64,
    /// How this server spells a recovery.
    pub(crate) recovery_text: &'a RecoveryText,
}

fn migration_list(title: &str, list: &[MigrationRef]) -> Markup {
    html! {
        @if !list.is_empty() {
            div.card {
                h2 { (title) }
                ul {
                    @for m in list {
                        li { code { (m.key) } " " (m.description) " " small { "(" (m.file) ")" } }
                    }
                }
            }
        }
    }
}

/// 503 for a tenant that is not served.
pub(crate) fn blocked(page_data: &BlockedPage<'_>, wants_json: bool) -> Response {
    let entry = page_data.entry;
    let Some(blocked) = &entry.blocked else {
        unreachable!("only blocked tenants get the blocked page")
    };
    let detail = blocked.error.as_deref().filter(|_| page_data.show_details);
    let recovery = page_data.recovery_text.render(&blocked.recovery);
    let response = if wants_json {
        json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({
                "error": "tenant_not_ready",
                "tenant": entry.name,
                "schema": entry.name,
                "stored_in": page_data.container,
                "domain": page_data.host,
                "state": entry.state,
                "reason": blocked.reason,
                "missing": blocked.missing,
                "changed": blocked.changed,
                "recovery": blocked.recovery,
                "recovery_text": recovery,
                "reference": page_data.reference,
                "detail": detail,
            }),
        )
    } else {
        let body = html! {
            p { span.tag { "503 Service Unavailable" } }
            h1 { "This workspace is being updated" }
            p {
                "The database of " strong { (entry.name) } (explanation(blocked.reason))
                " Nothing was lost."
            }
            div.card {
                dl {
                    dt { "Tenant" } dd #tenant { (entry.name) }
                    dt { "Stored in" } dd { code { (page_data.container) } }
                    dt { "Domain" } dd { (page_data.host) }
                    dt { "State" } dd { (entry.state) }
                    dt { "Reason" } dd { (blocked.reason.as_str()) }
                    dt { "Reference" } dd { code #reference { (page_data.reference) } }
                }
            }
            (migration_list("Missing migrations", &blocked.missing))
            (migration_list("Migrations applied from different files", &blocked.changed))
            @if let Some(detail) = detail {
                div.card { h2 { "Last error" } pre { (detail) } }
            }
            div.card {
                h2 { "How to recover" }
                p { "An operator runs:" }
                pre #recovery { (recovery) }
                p { small { "This page turns back into the application by itself once the tenant is ready; reload in a moment." } }
            }
        };
        page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Workspace being updated",
            body,
        )
    };
    with_retry_after(response, page_data.retry_after)
}

/// 503 when the registry cannot be read, or went unconfirmed too long.
/// Why requests to a blocked tenant pause, after its name.
fn explanation(reason: BlockReason) -> &'static str {
    match reason {
        BlockReason::BeingMoved => {
            " is being moved to another database server, so requests are paused until the move finishes."
        }
        BlockReason::StateUnknown => {
            " is on a database server that does not answer, so whether it holds every migration this version of the application needs is unknown; requests are paused instead of failing."
        }
        _ => " does not yet hold every migration this version of the application needs, so requests are paused instead of failing.",
    }
}

pub(crate) fn state_unknown(reference: &str, retry_after: u64, wants_json: bool) -> Response {
    let response = if wants_json {
        json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "error": "migration_state_unknown", "reason": "migration state unknown", "reference": reference }),
        )
    } else {
        page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Migration state unknown",
            html! {
                p { span.tag { "503 Service Unavailable" } }
                h1 { "Migration state unknown" }
                p {
                    "The registry of tenant migrations cannot be reached, so this server cannot tell whether "
                    "your workspace is safe to serve. Requests are paused until it can."
                }
                div.card { dl { dt { "Reference" } dd { code { (reference) } } } }
            },
        )
    };
    with_retry_after(response, retry_after)
}

/// 502 when the upstream refused or reset the connection, 504 when it sent
/// no response headers in time.
pub(crate) fn upstream_failed(status: StatusCode, wants_json: bool) -> Response {
    let (error, headline, text) = if status == StatusCode::GATEWAY_TIMEOUT {
        (
            "upstream_timeout",
            "The application took too long",
            "The application behind this address did not answer in time. Try again in a moment.",
        )
    } else {
        (
            "upstream_unavailable",
            "The application is not answering",
            "The application behind this address refused or dropped the connection. Try again in a moment.",
        )
    };
    if wants_json {
        return json_response(status, json!({ "error": error, "reason": headline }));
    }
    page(
        status,
        headline,
        html! {
            p { span.tag { (status.as_u16()) " " (status.canonical_reason().unwrap_or_default()) } }
            h1 { (headline) }
            p { (text) }
        },
    )
}

/// 404 for a host no tenant has.
pub(crate) fn unknown_host(host: &str, wants_json: bool) -> Response {
    if wants_json {
        return json_response(
            StatusCode::NOT_FOUND,
            json!({ "error": "unknown_host", "domain": host }),
        );
    }
    page(
        StatusCode::NOT_FOUND,
        "Unknown workspace",
        html! {
            p { span.tag { "404 Not Found" } }
            h1 { "No workspace at this address" }
            p { "No tenant is registered for " strong { (host) } ". Check the address." }
        },
    )
}

/// 400 for a request whose host cannot be read.
pub(crate) fn bad_host(reason: &str, wants_json: bool) -> Response {
    if wants_json {
        return json_response(
            StatusCode::BAD_REQUEST,
            json!({ "error": "bad_host", "reason": reason }),
        );
    }
    page(
        StatusCode::BAD_REQUEST,
        "Bad request",
        html! { h1 { "Bad request" } p { (reason) } },
    )
}

#[cfg(test)]
mod tests {
    use axum::body::to_bytes;

    #[tokio::test]
    async fn values_are_escaped() {
        let response = super::unknown_host("<script>alert('x')</script>", false);
        let body = to_bytes(response.into_body(), usize::MAX).await.unwrap();
        let body = String::from_utf8(body.to_vec()).unwrap();
        assert!(!body.contains("<script>alert"), "{body}");
        assert!(body.contains("&lt;script&gt;"), "{body}");
    }
}
