//! Who may use the service: where it may listen, and bearer tokens.
//!
//! A gateway's web API holds every cap it is given; so does `steward serve`.
//! It listens on 127.0.0.1 unless told otherwise, and [`policy`] refuses
//! another address unless the operator chose how to protect it:
//!
//! * `--token-file FILE`: every request must carry
//!   `Authorization: Bearer <the file's first line>` ([`check`] answers 401
//!   otherwise). The file must not be readable by group or others. The
//!   stock `tahoe` CLI cannot send this header, so a token-protected serve
//!   is for HTTP clients that can (curl, scripts, a reverse proxy adding
//!   it), not for a `node.url` used by `tahoe`.
//! * `--insecure-no-token`: anyone who can reach the address can use it
//!   (and every cap passed through it); a warning says so at start.
//!
//! On a loopback address no token is needed, but `--token-file` still
//! applies when given.

use crate::error::{Error, Result};
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

/// How requests are admitted.
#[derive(Clone, Debug)]
pub enum Access {
    /// Every request (loopback, or `--insecure-no-token`).
    Open,
    /// Requests with `Authorization: Bearer <token>`.
    Token(Arc<str>),
}

/// The shortest token accepted.
pub const MIN_TOKEN_LEN: usize = 16;

/// Decide the access rule for listening on `listen`, or refuse with what
/// to do. Returns a warning to print, if any.
pub fn policy(
    listen: SocketAddr,
    token_file: Option<&Path>,
    insecure_no_token: bool,
) -> Result<(Access, Option<String>)> {
    if token_file.is_some() && insecure_no_token {
        return Err(Error::config(
            "--token-file and --insecure-no-token contradict each other: give one",
        ));
    }
    if let Some(f) = token_file {
        return Ok((Access::Token(read_token(f)?.into()), None));
    }
    if listen.ip().is_loopback() {
        return Ok((Access::Open, None));
    }
    if insecure_no_token {
        return Ok((
            Access::Open,
            Some(format!(
                "listening on {listen} without a token (--insecure-no-token): anyone who can reach it can use the grid through it, with every cap sent to it"
            )),
        ));
    }
    Err(Error::config(format!(
        "--listen {listen} is not a loopback address: give --token-file FILE (every request then needs Authorization: Bearer <token>) or, knowing that anyone who reaches it can use it, --insecure-no-token"
    )))
}

/// The token of a `--token-file` (its first line; the file must be 0600).
pub fn read_token(f: &Path) -> Result<String> {
    let meta =
        std::fs::metadata(f).map_err(|e| Error::io(format!("--token-file {}", f.display()), e))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(Error::config(format!(
            "--token-file {} can be read by other users: chmod 600 it",
            f.display()
        )));
    }
    let text = std::fs::read_to_string(f)
        .map_err(|e| Error::io(format!("--token-file {}", f.display()), e))?;
    let token = text.lines().next().unwrap_or("").trim().to_string();
    if token.len() < MIN_TOKEN_LEN || !token.chars().all(|c| c.is_ascii_graphic()) {
        return Err(Error::config(format!(
            "--token-file {}: its first line must be a token of at least {MIN_TOKEN_LEN} printable ASCII characters (for example from `head -c 32 /dev/urandom | base64`)",
            f.display()
        )));
    }
    Ok(token)
}

/// Equal in time that does not depend on where the bytes differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Middleware: admit a request, or answer 401 with a one-line reason.
pub async fn check(State(access): State<Access>, req: Request, next: Next) -> Response {
    let Access::Token(token) = &access else {
        return next.run(req).await;
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let reason = match given {
        Some(t) if same(t.as_bytes(), token.as_bytes()) => return next.run(req).await,
        Some(_) => "steward serve: the bearer token is not the one this service was given\n",
        None => "steward serve: this service needs Authorization: Bearer <token> (the first line of its --token-file)\n",
    };
    (
        StatusCode::UNAUTHORIZED,
        [
            (header::WWW_AUTHENTICATE, "Bearer realm=\"steward\""),
            (header::CONTENT_TYPE, "text/plain;charset=utf-8"),
        ],
        reason,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn listening_elsewhere_needs_a_token_or_an_explicit_choice() {
        let lo: SocketAddr = "127.0.0.1:3457".parse().unwrap();
        let lo6: SocketAddr = "[::1]:3457".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:3457".parse().unwrap();
        assert!(matches!(
            policy(lo, None, false).unwrap(),
            (Access::Open, None)
        ));
        assert!(matches!(
            policy(lo6, None, false).unwrap(),
            (Access::Open, None)
        ));
        let err = policy(any, None, false).unwrap_err();
        assert!(err.message.contains("--token-file"), "{err}");
        let (a, warning) = policy(any, None, true).unwrap();
        assert!(matches!(a, Access::Open));
        assert!(warning.unwrap().contains("anyone"));
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("token");
        let mut file = std::fs::File::create(&f).unwrap();
        writeln!(file, "0123456789abcdef0123").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = policy(any, Some(&f), false).unwrap_err();
        assert!(err.message.contains("chmod 600"), "{err}");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        match policy(any, Some(&f), false).unwrap() {
            (Access::Token(t), None) => assert_eq!(&*t, "0123456789abcdef0123"),
            other => panic!("{other:?}"),
        }
        assert!(policy(lo, Some(&f), true).is_err());
        std::fs::write(&f, "short\n").unwrap();
        let err = policy(lo, Some(&f), false).unwrap_err();
        assert!(err.message.contains("at least 16"), "{err}");
        assert!(same(b"abc", b"abc") && !same(b"abc", b"abd") && !same(b"abc", b"ab"));
    }
}
