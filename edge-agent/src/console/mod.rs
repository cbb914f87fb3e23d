//! The people's screens served by the agent itself: the officer console for the gate
//! booth and the terminal operator's view of all lanes, with the accounts and sessions
//! behind them. Everything is served locally (HTML rendered with maud, one small
//! hand-written script and style sheet embedded in the binary); live updates are
//! server-sent events carrying HTML rendered for the viewer's role and language.
//!
//! | path | who | what |
//! |---|---|---|
//! | `GET /login`, `POST /login` | anyone | log in (form; sets the session cookie) |
//! | `POST /logout` | any session | log out |
//! | `GET /` | any session | redirects to the role's screen |
//! | `GET /console?lane=` | officer, supervisor | one lane live: reads vs declared, parties, decision, reasons, actions |
//! | `GET /console/events?lane=` | officer, supervisor | SSE: `panel` (the lane's HTML, its banner included) |
//! | `GET /console/history?lane=&container=` | officer, supervisor | recent transactions, search by container |
//! | `GET /console/tx/{id}` | officer, supervisor | one transaction with reasons and officer actions |
//! | `GET /operator` | every role | all lanes at a glance: state, route, queues, FAST share; no reasons |
//! | `GET /operator/events` | every role | SSE: `panel` (the lanes' HTML) |
//! | `POST /api/v1/login`, `POST /api/v1/logout` | anyone / any session | token login for scripts |
//!
//! # Layout
//! - [`users`]: accounts (Argon2id) and sessions in the agent's redb file.
//! - [`auth`]: login, logout, the [`auth::Authed`] extractor, over the shared web rules
//!   ([`aeogate_web`]: cookie, CSRF policy, login limiter).
//! - [`text`]: the screens' strings in English, Spanish and Portuguese.
//! - [`view`]: what a lane shows, gathered from live state, the journal and the replica.
//! - [`pages`]: the HTML (maud) and the SSE feeds.

pub mod auth;
pub mod pages;
pub mod text;
pub mod users;
pub mod view;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::routing::{get, post};
use protocol::i18n::Lang;
use protocol::schema::GateId;

pub use auth::{Authed, Console};
pub use users::{Role, Users};

use crate::state::AppState;
use crate::store::Store;

/// The console's routes (pages, feeds, assets, login), over the console's state.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(pages::home))
        .route("/login", get(pages::login_page).post(pages::login_form))
        .route("/logout", post(auth::logout_form))
        .route("/api/v1/login", post(auth::login_json))
        .route("/api/v1/logout", post(auth::logout_api))
        .route("/console", get(pages::console))
        .route("/console/events", get(pages::console_events))
        .route("/console/history", get(pages::history))
        .route("/console/tx/{id}", get(pages::transaction))
        .route("/operator", get(pages::operator))
        .route("/operator/events", get(pages::operator_events))
        .route("/assets/console.js", get(pages::script))
        .route("/assets/console.css", get(pages::style))
}

/// Opens the console's account tables on the agent's store; `tls` when the console is
/// served over TLS (cookies `Secure` and `__Host-` prefixed).
///
/// # Errors
/// The tables cannot be created.
pub fn console(store: &Store, tls: bool) -> anyhow::Result<Arc<Console>> {
    Ok(Arc::new(Console {
        users: Users::open(store).context("opening console accounts")?,
        limiter: std::sync::Mutex::default(),
        tls,
    }))
}

/// Creates or replaces a console account in an open store.
///
/// # Errors
/// An invalid name (1..=32 of `[A-Za-z0-9._-]`) or a password too short or too easy to
/// guess ([`users::check_password`]); storage failures.
pub fn add_user(
    store: &Store,
    name: &str,
    password: &str,
    role: Role,
    lang: Lang,
) -> anyhow::Result<()> {
    Users::open(store)?
        .put(name, password, role, lang)
        .with_context(|| format!("adding console account {name:?}"))
}

/// Creates or replaces a console account in the store file of an agent that is not
/// running (redb allows one process per file), e.g. before the demo starts its agents.
///
/// # Errors
/// The store cannot be opened (or belongs to a running agent); invalid name or
/// password.
pub fn add_user_to_store_file(
    path: &Path,
    gate: GateId,
    name: &str,
    password: &str,
    role: Role,
    lang: Lang,
) -> anyhow::Result<()> {
    let store =
        Store::open(path, gate).with_context(|| format!("opening the store {}", path.display()))?;
    add_user(&store, name, password, role, lang)
}

/// Stores a session under a token the caller chose (at least 32 characters) in the store
/// file of an agent that is not running, valid for `ttl`: for test rigs and provisioning
/// scripts that drive the agent's API as `Authorization: Bearer <token>`. The account
/// need not exist; the session carries the name and role.
///
/// # Errors
/// The store cannot be opened; a short token or invalid name.
pub fn add_session_to_store_file(
    path: &Path,
    gate: GateId,
    name: &str,
    role: Role,
    token: &str,
    ttl: Duration,
) -> anyhow::Result<()> {
    let store =
        Store::open(path, gate).with_context(|| format!("opening the store {}", path.display()))?;
    Users::open(&store)?
        .insert_session(token, name, role, Lang::En, ttl)
        .context("storing the session")?;
    Ok(())
}
