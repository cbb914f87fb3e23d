//! Staff accounts (admin only): every user with role and state, and a form per user to
//! change the role or disable / enable the account. Changes apply to the user's open
//! sessions at their next request ([`Central::session`] reads the user every time).

use axum::Form;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;

use super::session::UiSession;
use super::{Nav, T, error_page, internal, layout};
use crate::auth::AuthError;
use crate::model::Role;
use crate::service::Central;

/// `GET /users`.
pub async fn page(State(c): State<Central>, s: UiSession) -> Response {
    let l = s.lang;
    if !s.role.may_manage_credentials() {
        return error_page(&s, StatusCode::FORBIDDEN, T::UsersAdminOnly.get(l));
    }
    let users = match c.blocking(|c| c.users()).await {
        Ok(u) => u,
        Err(e) => return internal(&e),
    };
    let body = html! {
        table #users { thead { tr { th { (T::Name.get(l)) } th { (T::Role.get(l)) } th { (T::Status.get(l)) } th {} } }
            tbody { @for u in users.iter().filter(|u| u.company.is_none()) {
                @let role = Role::parse(&u.role);
                tr data-user=(u.name) {
                    td { (u.name) }
                    td { (u.role) }
                    td class=(if u.disabled { "warn" } else { "" }) {
                        (if u.disabled { T::AccountDisabled.get(l) } else { T::AccountActive.get(l) })
                    }
                    td { @if u.name != s.user {
                        form.inline method="post" action={"/users/" (u.name) "/access"} {
                            input type="hidden" name="csrf" value=(s.csrf);
                            label { span.sr { (T::Role.get(l)) }
                                select name="role" { @for r in Role::ALL {
                                    option value=(r.as_str()) selected[role == Some(r)] { (r.as_str()) }
                                } } }
                            label { span.sr { (T::Status.get(l)) }
                                select name="state" {
                                    option value="active" selected[!u.disabled] { (T::AccountActive.get(l)) }
                                    option value="disabled" selected[u.disabled] { (T::AccountDisabled.get(l)) }
                                } }
                            button { (T::Save.get(l)) }
                        }
                    } }
                }
            } }
        }
    };
    layout(&s, Nav::Users, T::Users.get(l), body).into_response()
}

/// The access form.
#[derive(Debug, Deserialize)]
pub struct AccessForm {
    csrf: Option<String>,
    role: String,
    /// `active` or `disabled`.
    state: String,
}

/// `POST /users/{name}/access` (admin only, not for one's own account): sets the role and
/// the disabled state; audited by the store with the admin's name.
pub async fn set_access(
    State(c): State<Central>,
    s: UiSession,
    headers: HeaderMap,
    Path(name): Path<String>,
    Form(f): Form<AccessForm>,
) -> Response {
    if let Err(e) = s.check_csrf_in(f.csrf.as_deref(), &headers) {
        return e.into_response();
    }
    let l = s.lang;
    if !s.role.may_manage_credentials() {
        return error_page(&s, StatusCode::FORBIDDEN, T::UsersAdminOnly.get(l));
    }
    if name == s.user {
        return error_page(&s, StatusCode::BAD_REQUEST, T::NotOwnAccount.get(l));
    }
    let disabled = match f.state.as_str() {
        "active" => false,
        "disabled" => true,
        other => {
            let msg = format!("state {other:?}: expected active or disabled");
            return error_page(&s, StatusCode::UNPROCESSABLE_ENTITY, &msg);
        }
    };
    let actor = s.user.clone();
    let n = name.clone();
    let out = c
        .blocking(move |c| {
            let current = c
                .user(&n)?
                .ok_or_else(|| AuthError::UnknownUser(n.clone()))?;
            if Role::parse(&current.role).map(Role::as_str) != Some(f.role.as_str()) {
                c.set_user_role(&n, &f.role, &actor)?;
            }
            if current.disabled != disabled {
                c.set_user_disabled(&n, disabled, &actor)?;
            }
            Ok::<_, AuthError>(())
        })
        .await;
    match out {
        Ok(()) => Redirect::to("/users").into_response(),
        Err(AuthError::UnknownUser(_)) => error_page(&s, StatusCode::NOT_FOUND, T::NotFound.get(l)),
        Err(AuthError::Invalid(why)) => error_page(&s, StatusCode::UNPROCESSABLE_ENTITY, &why),
        Err(e) => internal(&e),
    }
}
