//! The app's routes: `/{lang}/app/messages/`, sign-in, user creation.

use axum::{
    extract::{Path, Query, State},
    http::{header, HeaderMap, StatusCode},
    response::{Html, IntoResponse, Redirect, Response},
    routing::{get, post},
    Form, Router,
};
use cookie::{Cookie, SameSite};
use maud::{html, Markup, PreEscaped, DOCTYPE};
use tenantgate::TenantName;
use tenantgate_http::ResolvedTenant;

use crate::store::{AppDb, AppDbError};

/// The app's state: where its tenant data lives.
#[derive(Clone)]
pub struct AppState {
    /// The store request handlers query.
    pub db: AppDb,
    /// Who may read the store's own error text in an error response.
    pub details: tenantgate_http::DetailPolicy,
}

/// The app's routes; mount them behind [`tenantgate_http::GuardLayer`].
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/{lang}/app/messages/", get(messages))
        .route("/{lang}/app/sign-in", get(sign_in))
        .route("/{lang}/app/users", post(new_user))
        .with_state(state)
}

const COOKIE: &str = "tenantgate_demo_user";

struct Texts {
    title: &'static str,
    signed_in_as: &'static str,
    online: &'static str,
    unread: &'static str,
    empty: &'static str,
    no_users: &'static str,
}

fn texts(lang: &str) -> Option<&'static Texts> {
    match lang {
        "en" => Some(&Texts {
            title: "Messages",
            signed_in_as: "Signed in as",
            online: "online",
            unread: "unread",
            empty: "No conversations yet.",
            no_users: "This workspace has no users yet.",
        }),
        "fr" => Some(&Texts {
            title: "Messages",
            signed_in_as: "Connecté en tant que",
            online: "en ligne",
            unread: "non lus",
            empty: "Aucune conversation pour l'instant.",
            no_users: "Cet espace n'a pas encore d'utilisateurs.",
        }),
        _ => None,
    }
}

/// A handler's failure: the store's error, classified, or input the app
/// refuses before any query.
enum AppError {
    Store(AppDbError),
    Invalid(&'static str),
}

impl From<AppDbError> for AppError {
    fn from(e: AppDbError) -> Self {
        Self::Store(e)
    }
}

impl AppError {
    /// The response: 503 when the store may answer later, 4xx for the
    /// request's own fault, 500 for a bug. The store's text only where
    /// `reveal` allows; otherwise a reference to the log line.
    fn respond(self, tenant: &TenantName, reveal: bool) -> Response {
        let store = match self {
            AppError::Invalid(message) => {
                return (StatusCode::BAD_REQUEST, message).into_response()
            }
            AppError::Store(AppDbError::UsernameTaken) => {
                return (StatusCode::CONFLICT, "this username is taken").into_response()
            }
            AppError::Store(e) => e,
        };
        let reference = tenantgate_http::reference_id();
        tracing::error!(tenant = %tenant, reference = %reference, error = %store, "messages app: query failed");
        let (status, headline) = match &store {
            AppDbError::Unavailable(_) | AppDbError::SchemaIncomplete(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "the workspace's database is unavailable right now; try again in a moment",
            ),
            AppDbError::Rejected(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "the database refused these values",
            ),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal error"),
        };
        let detail = if reveal {
            format!("\ndetail: {store}")
        } else {
            String::new()
        };
        let mut response = (
            status,
            format!("{headline}\ntenant: {tenant}\nreference: {reference}{detail}\n"),
        )
            .into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
        }
        response
    }
}

/// The signed-in user's name, from the session cookie.
fn signed_in_user(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == COOKIE)
        .map(|c| c.value().to_owned())
}

async fn messages(
    State(state): State<AppState>,
    Path(lang): Path<String>,
    tenant: ResolvedTenant,
    headers: HeaderMap,
) -> Response {
    let reveal = state.details.reveals(&headers);
    messages_page(&state, &lang, &tenant, &headers)
        .await
        .unwrap_or_else(|e| e.respond(&tenant.name, reveal))
}

async fn messages_page(
    state: &AppState,
    lang: &str,
    tenant: &ResolvedTenant,
    headers: &HeaderMap,
) -> Result<Response, AppError> {
    let Some(t) = texts(lang) else {
        return Ok(StatusCode::NOT_FOUND.into_response());
    };
    let Some(dashboard) = state
        .db
        .dashboard(&tenant.name, signed_in_user(headers))
        .await?
    else {
        return Ok(page(lang, t, &tenant.name, html! { p { (t.no_users) } }));
    };
    let body = html! {
        p {
            (t.signed_in_as) " " strong #user { (dashboard.display_name) } " · "
            span #status { (if dashboard.online { t.online } else { "offline" }) }
        }
        @if dashboard.conversations.is_empty() {
            p { (t.empty) }
        } @else {
            ul #conversations {
                @for (title, unread) in &dashboard.conversations {
                    li { (title) " " span.unread { (unread) " " (t.unread) } }
                }
            }
        }
    };
    Ok(page(lang, t, &tenant.name, body))
}

fn page(lang: &str, t: &Texts, tenant: &TenantName, body: Markup) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang=(lang) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (t.title) " · " (tenant) }
                style { (PreEscaped("body{font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem}.unread{color:#a3261b;font-size:.9rem}")) }
            }
            body {
                h1 { (t.title) }
                p { small { (tenant) } }
                (body)
            }
        }
    };
    Html(markup.into_string()).into_response()
}

#[derive(serde::Deserialize)]
struct SignIn {
    user: String,
}

async fn sign_in(Path(lang): Path<String>, Query(q): Query<SignIn>) -> Response {
    if texts(&lang).is_none()
        || !q
            .user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return StatusCode::BAD_REQUEST.into_response();
    }
    let cookie = Cookie::build((COOKIE, q.user))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax);
    (
        [(header::SET_COOKIE, cookie.to_string())],
        Redirect::to(&format!("/{lang}/app/messages/")),
    )
        .into_response()
}

#[derive(serde::Deserialize)]
struct NewUser {
    username: String,
    display_name: String,
}

/// The longest username and display name the schema holds (characters).
const MAX_USERNAME: usize = 150;
const MAX_DISPLAY_NAME: usize = 200;

/// Refuses what the store would refuse, before any query: empty or
/// overlong names, and control characters (a NUL is not text to PostgreSQL).
fn check_new_user(form: &NewUser) -> Result<(), AppError> {
    let plain = |s: &str| !s.chars().any(char::is_control);
    if form.username.is_empty() || form.username.chars().count() > MAX_USERNAME {
        return Err(AppError::Invalid("a username has 1 to 150 characters"));
    }
    if form.display_name.is_empty() || form.display_name.chars().count() > MAX_DISPLAY_NAME {
        return Err(AppError::Invalid("a display name has 1 to 200 characters"));
    }
    if !plain(&form.username) || !plain(&form.display_name) {
        return Err(AppError::Invalid("names hold no control characters"));
    }
    Ok(())
}

async fn new_user(
    State(state): State<AppState>,
    Path(lang): Path<String>,
    tenant: ResolvedTenant,
    headers: HeaderMap,
    Form(form): Form<NewUser>,
) -> Response {
    let reveal = state.details.reveals(&headers);
    create_user(&state, &lang, &tenant, &form)
        .await
        .unwrap_or_else(|e| e.respond(&tenant.name, reveal))
}

async fn create_user(
    state: &AppState,
    lang: &str,
    tenant: &ResolvedTenant,
    form: &NewUser,
) -> Result<Response, AppError> {
    check_new_user(form)?;
    let id = state
        .db
        .create_user(&tenant.name, &form.username, &form.display_name)
        .await?;
    Ok((
        StatusCode::SEE_OTHER,
        [(header::LOCATION, format!("/{lang}/app/messages/"))],
        format!("created user {id}"),
    )
        .into_response())
}
