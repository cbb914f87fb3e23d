//! Staff accounts (admin only): every user with role and state, and a form per user to
//! change the role or disable / enable the account; then the programme portal's company
//! accounts with their company, which an admin disables or enables (never gives a staff
//! role). Changes apply to the user's open sessions at their next request
//! ([`Central::session`] reads the user every time).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;

use super::portal_text::T as P;
use super::session::{CsrfField, FormPost, UiSession};
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
        @if users.iter().any(|u| u.company.is_some()) {
        h2 { (P::CompanyAccounts.get(l)) }
        table #company-users { thead { tr { th { (T::Name.get(l)) } th { (P::Operator.get(l)) } th { (T::Status.get(l)) } th {} } }
            tbody { @for u in &users { @if let Some(op) = &u.company {
                tr data-user=(u.name) {
                    td { (u.name) }
                    td { a href={"/applications/" (op)} { (op) } }
                    td class=(if u.disabled { "warn" } else { "" }) {
                        (if u.disabled { T::AccountDisabled.get(l) } else { T::AccountActive.get(l) })
                    }
                    td {
                        form.inline method="post" action={"/users/" (u.name) "/access"} {
                            input type="hidden" name="csrf" value=(s.csrf);
                            label { span.sr { (T::Status.get(l)) }
                                select name="state" {
                                    option value="active" selected[!u.disabled] { (T::AccountActive.get(l)) }
                                    option value="disabled" selected[u.disabled] { (T::AccountDisabled.get(l)) }
                                } }
                            button { (T::Save.get(l)) }
                        }
                    }
                }
            } } }
        }
        }
    };
    layout(&s, Nav::Users, T::Users.get(l), body).into_response()
}

/// The access form.
#[derive(Debug, Deserialize)]
pub struct AccessForm {
    csrf: Option<String>,
    /// Absent on a company account's form (its role is not changed here).
    #[serde(default)]
    role: Option<String>,
    /// `active` or `disabled`.
    state: String,
}

impl CsrfField for AccessForm {
    fn csrf(&self) -> Option<&str> {
        self.csrf.as_deref()
    }
}

/// `POST /users/{name}/access` (admin only, not for one's own account): sets the role (when
/// given) and the disabled state; audited by the store with the admin's name.
pub async fn set_access(
    FormPost(c, s, Path(name), f): FormPost<UiSession, Path<String>, AccessForm>,
) -> Response {
    if let Some(refused) = s.refuse(s.role.may_manage_credentials(), T::UsersAdminOnly) {
        return refused;
    }
    let l = s.lang;
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
            if current.company.is_some() && f.role.is_some() {
                return Err(AuthError::Invalid(format!(
                    "{n} is a company account of the programme portal: it has no staff role"
                )));
            }
            if let Some(role) = &f.role
                && Role::parse(&current.role).map(Role::as_str) != Some(role.as_str())
            {
                c.set_user_role(&n, role, &actor)?;
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
