//! Login, logout and the password change page.

use axum::extract::{FromRequest, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;
use maud::{html, Markup};
use serde::Deserialize;

use crate::audit::Outcome;
use crate::auth::CurrentUser;
use crate::http::{
    client_ip, cookie, expired_cookie, session_cookie, LOGIN_COOKIE, SESSION_COOKIE,
};
use crate::layout::{bare_page, csrf_field, page};
use crate::users::{check_password_policy, verify_password};
use crate::{AppError, AppState};

fn login_form(csrf: &str, message: Option<&str>, username: &str) -> Markup {
    bare_page(
        "Log in",
        html! {
            div.card.login {
                h1 { "Log in" }
                @if let Some(m) = message { p.error role="alert" { (m) } }
                form method="post" action="/login" {
                    input type="hidden" name="csrf" value=(csrf);
                    label for="username" { "Username" }
                    input #username type="text" name="username" value=(username)
                        autocomplete="username" autocapitalize="none" required autofocus;
                    label for="password" { "Password" }
                    input #password type="password" name="password"
                        autocomplete="current-password" required;
                    p { button #login type="submit" { "Log in" } }
                }
            }
        },
    )
}

fn valid_token(t: &str) -> bool {
    t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The pre-login CSRF token (double submit: cookie and hidden field must
/// match), reused while the cookie lasts so two open tabs both work.
fn login_page(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    message: Option<&str>,
    username: &str,
) -> Response {
    let token = cookie(headers, LOGIN_COOKIE)
        .filter(|t| valid_token(t))
        .unwrap_or_else(|| crate::users::random_hex(32));
    let set = format!(
        "{LOGIN_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/login; Max-Age=3600{}",
        if state.config.secure_cookies {
            "; Secure"
        } else {
            ""
        }
    );
    (
        status,
        [(header::SET_COOKIE, set)],
        Html(login_form(&token, message, username).into_string()),
    )
        .into_response()
}

pub async fn login_get(State(state): State<AppState>, req: Request) -> Response {
    if req.extensions().get::<CurrentUser>().is_some() {
        return Redirect::to("/").into_response();
    }
    login_page(&state, req.headers(), StatusCode::OK, None, "")
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
}

pub async fn login_post(State(state): State<AppState>, req: Request) -> Result<Response, AppError> {
    let ip = client_ip(&req);
    let headers = req.headers().clone();
    let Form(form) = match Form::<LoginForm>::from_request(req, &state).await {
        Ok(f) => f,
        Err(rejection) => return Ok(rejection.into_response()),
    };
    let cookie_token = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if !valid_token(&cookie_token) || !crate::auth::ct_eq(&cookie_token, &form.csrf) {
        return Ok(login_page(
            &state,
            &headers,
            StatusCode::FORBIDDEN,
            Some("The login form expired. Please try again."),
            "",
        ));
    }
    let username: String = form
        .username
        .trim()
        .to_lowercase()
        .chars()
        .take(64)
        .collect();
    let keys = [format!("user:{username}"), format!("ip:{ip}")];
    let known = state.users.get(&username);
    // A typo'd password typed into the username box must not land in the
    // audit trail, so unknown names are recorded as such.
    let target = if known.is_some() {
        username.clone()
    } else {
        "(unknown user)".into()
    };

    if state.limiter.blocked(&keys) {
        state
            .audit("-", "login", &target, Outcome::Denied, &ip)
            .await?;
        let minutes = state.config.login_window.as_secs().div_ceil(60);
        let msg = format!(
            "Too many failed logins for this user or from this address. Wait {minutes} minutes and try again, or ask an administrator."
        );
        return Ok(login_page(
            &state,
            &headers,
            StatusCode::TOO_MANY_REQUESTS,
            Some(&msg),
            &username,
        ));
    }

    // Unknown users are checked against a dummy hash, so the answer takes
    // as long as for a real one and does not reveal who exists.
    let hash = known
        .as_ref()
        .map(|u| u.password_hash.clone())
        .unwrap_or_else(|| state.dummy_hash.clone());
    let password = form.password;
    let verified = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
        .await
        .map_err(AppError::task)?;
    let user = match known {
        Some(u) if verified && !u.disabled => u,
        _ => {
            state.limiter.fail(&keys);
            state
                .audit("-", "login", &target, Outcome::Failure, &ip)
                .await?;
            return Ok(login_page(
                &state,
                &headers,
                StatusCode::UNAUTHORIZED,
                Some("Wrong username or password."),
                &username,
            ));
        }
    };
    state.limiter.clear(&keys[0]);
    let (id, _csrf) = state.sessions.create(&user.username);
    state
        .audit(
            &user.username,
            "login",
            &user.username,
            Outcome::Success,
            &ip,
        )
        .await?;
    let secure = state.config.secure_cookies;
    let next = if user.must_change_password {
        "/password"
    } else {
        "/"
    };
    let mut resp = Redirect::to(next).into_response();
    let h = resp.headers_mut();
    h.append(
        header::SET_COOKIE,
        session_cookie(&id, secure).parse().expect("ascii"),
    );
    h.append(
        header::SET_COOKIE,
        expired_cookie(LOGIN_COOKIE, "/login", secure)
            .parse()
            .expect("ascii"),
    );
    Ok(resp)
}

pub async fn logout(
    State(state): State<AppState>,
    user: CurrentUser,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    if let Some(id) = cookie(&headers, SESSION_COOKIE) {
        state.sessions.remove(&id);
    }
    state
        .audit(
            &user.username,
            "logout",
            &user.username,
            Outcome::Success,
            &user.ip,
        )
        .await?;
    let mut resp = Redirect::to("/login").into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        expired_cookie(SESSION_COOKIE, "/", state.config.secure_cookies)
            .parse()
            .expect("ascii"),
    );
    Ok(resp)
}

fn password_form(user: &CurrentUser, message: Option<&str>) -> Markup {
    page(
        "Change password",
        user,
        html! {
            @if user.must_change_password {
                p.notice { "Choose your own password before you go on." }
            }
            @if let Some(m) = message { p.error role="alert" { (m) } }
            form.card method="post" action="/password" {
                (csrf_field(user))
                label for="current" { "Current password" }
                input #current type="password" name="current" autocomplete="current-password" required;
                label for="new" { "New password (at least " (crate::users::MIN_PASSWORD_CHARS) " characters)" }
                input #new type="password" name="new" autocomplete="new-password" required;
                label for="confirm" { "New password again" }
                input #confirm type="password" name="confirm" autocomplete="new-password" required;
                p { button #change type="submit" { "Change password" } }
            }
        },
    )
}

pub async fn password_get(user: CurrentUser) -> Html<String> {
    Html(password_form(&user, None).into_string())
}

#[derive(Debug, Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    current: String,
    #[serde(default)]
    new: String,
    #[serde(default)]
    confirm: String,
}

pub async fn password_post(
    State(state): State<AppState>,
    user: CurrentUser,
    headers: HeaderMap,
    Form(form): Form<PasswordForm>,
) -> Result<Response, AppError> {
    let fail = |status: StatusCode, msg: &str| -> Response {
        (status, Html(password_form(&user, Some(msg)).into_string())).into_response()
    };
    // Guessing the current password here counts like failed logins.
    let keys = [format!("user:{}", user.username), format!("ip:{}", user.ip)];
    if state.limiter.blocked(&keys) {
        return Ok(fail(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many wrong passwords. Wait a few minutes.",
        ));
    }
    let Some(stored) = state.users.get(&user.username) else {
        return Ok(fail(StatusCode::FORBIDDEN, "Unknown user."));
    };
    let (current, hash) = (form.current.clone(), stored.password_hash.clone());
    let ok = tokio::task::spawn_blocking(move || verify_password(&current, &hash))
        .await
        .map_err(AppError::task)?;
    if !ok {
        state.limiter.fail(&keys);
        state
            .audit(
                &user.username,
                "password_change",
                &user.username,
                Outcome::Failure,
                &user.ip,
            )
            .await?;
        return Ok(fail(
            StatusCode::UNAUTHORIZED,
            "The current password is wrong.",
        ));
    }
    if form.new != form.confirm {
        return Ok(fail(
            StatusCode::BAD_REQUEST,
            "The two new passwords differ.",
        ));
    }
    if form.new == form.current {
        return Ok(fail(
            StatusCode::BAD_REQUEST,
            "The new password must differ from the current one.",
        ));
    }
    if let Err(msg) = check_password_policy(&user.username, &form.new) {
        return Ok(fail(StatusCode::BAD_REQUEST, &msg));
    }
    let (st, name, new) = (state.clone(), user.username.clone(), form.new);
    tokio::task::spawn_blocking(move || st.users.set_password(&name, &new, false))
        .await
        .map_err(AppError::task)??;
    // Other sessions (a stolen one, say) end; this one goes on.
    let keep = cookie(&headers, SESSION_COOKIE);
    state.sessions.remove_user(&user.username, keep.as_deref());
    state
        .audit(
            &user.username,
            "password_change",
            &user.username,
            Outcome::Success,
            &user.ip,
        )
        .await?;
    Ok(Redirect::to("/").into_response())
}
