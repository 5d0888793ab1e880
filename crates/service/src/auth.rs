//! Bearer tokens in front of the write APIs (`POST /products`, `POST
//! /predict`). The token comes from a Secret mounted as a file
//! (`API_TOKEN_FILE`) or from `API_TOKEN`, never from a flag; it is compared
//! in constant time and never logged. `/healthz`, `/readyz` and `/metrics`
//! stay open (the ops router is not behind this layer).

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;

/// Shortest token accepted: a guessable token is refused at start.
pub const MIN_TOKEN_LEN: usize = 16;

/// How the write API authenticates (`clap` flags and env vars).
#[derive(Debug, Clone, clap::Args)]
pub struct ApiAuthArgs {
    /// File holding the bearer token clients send as `Authorization: Bearer
    /// <token>` (the cluster mounts a Secret here); otherwise the
    /// `API_TOKEN` env var is used when set.
    #[arg(long = "api-token-file", env = "API_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Serve the write API without a token: for a laptop, never a cluster.
    /// Refused together with a token.
    #[arg(long = "api-no-auth", env = "API_NO_AUTH", default_value_t = false)]
    pub no_auth: bool,
}

/// What the write API requires.
#[derive(Clone)]
pub enum ApiAuth {
    Token(Token),
    Open,
}

/// A bearer token; its `Debug` hides it.
#[derive(Clone)]
pub struct Token(Arc<[u8]>);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Token(<{} bytes, hidden>)", self.0.len())
    }
}

impl Token {
    pub fn new(token: &str) -> Result<Self, AuthConfigError> {
        if token.len() < MIN_TOKEN_LEN || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(AuthConfigError::Weak { min: MIN_TOKEN_LEN });
        }
        Ok(Self(token.as_bytes().into()))
    }

    /// Constant time in the token's bytes: the position of a first
    /// mismatch does not show in the time taken.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        let expected = &self.0;
        let mut difference = (expected.len() != candidate.len()) as u8;
        for (i, byte) in expected.iter().enumerate() {
            difference |= byte ^ candidate.get(i).copied().unwrap_or(!byte);
        }
        difference == 0
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    #[error("API_TOKEN_FILE {path:?} cannot be read: {source}")]
    File { path: PathBuf, source: std::io::Error },
    #[error("API_TOKEN_FILE (or API_TOKEN) must hold a token of at least {min} characters, no spaces")]
    Weak { min: usize },
    #[error(
        "API_TOKEN_FILE (or API_TOKEN) is not set: the write API needs a bearer token \
         (set API_NO_AUTH=true to serve it without one, on a laptop only)"
    )]
    Missing,
    #[error("API_NO_AUTH=true and a token (API_TOKEN_FILE or API_TOKEN) are both set: choose one")]
    Both,
}

impl ApiAuthArgs {
    /// The settings checked at start: a bad one fails fast, naming itself.
    pub fn load(&self) -> Result<ApiAuth, AuthConfigError> {
        let token = match &self.token_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|source| AuthConfigError::File { path: path.clone(), source })?
                    .trim_end_matches(['\r', '\n'])
                    .to_string(),
            ),
            None => std::env::var("API_TOKEN").ok().filter(|t| !t.is_empty()),
        };
        match (token, self.no_auth) {
            (Some(_), true) => Err(AuthConfigError::Both),
            (Some(token), false) => Ok(ApiAuth::Token(Token::new(&token)?)),
            (None, true) => {
                tracing::warn!("API_NO_AUTH=true: the write API answers anyone who reaches it");
                Ok(ApiAuth::Open)
            }
            (None, false) => Err(AuthConfigError::Missing),
        }
    }
}

/// Puts `routes` behind the bearer token (only the routes: an unknown path
/// stays a 404). Merge the ops router after this, so it stays open.
pub fn require_token<S: Clone + Send + Sync + 'static>(routes: Router<S>, auth: ApiAuth) -> Router<S> {
    match auth {
        ApiAuth::Open => routes,
        ApiAuth::Token(token) => routes.route_layer(axum::middleware::from_fn_with_state(token, check_bearer)),
    }
}

async fn check_bearer(State(token): State<Token>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, credentials)| credentials.trim());
    match presented {
        Some(candidate) if token.matches(candidate.as_bytes()) => next.run(request).await,
        _ => {
            let mut response = crate::HttpError(
                StatusCode::UNAUTHORIZED,
                "a bearer token is required: Authorization: Bearer <token>".into(),
            )
            .into_response();
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"lab8\""));
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef-token";

    #[test]
    fn matches_only_the_whole_token() {
        let token = Token::new(TOKEN).unwrap();
        assert!(token.matches(TOKEN.as_bytes()));
        for wrong in
            ["", "0123456789abcdef-toke", "0123456789abcdef-tokenX", "1123456789abcdef-token", "0123456789abcdef-tokeN"]
        {
            assert!(!token.matches(wrong.as_bytes()), "{wrong:?}");
        }
    }

    #[test]
    fn weak_tokens_are_refused_and_none_is_logged() {
        assert!(matches!(Token::new("short"), Err(AuthConfigError::Weak { .. })));
        assert!(matches!(Token::new("0123456789abcdef with space"), Err(AuthConfigError::Weak { .. })));
        assert!(!format!("{:?}", Token::new(TOKEN).unwrap()).contains(TOKEN));
    }

    #[test]
    fn settings_fail_fast_naming_themselves() {
        let dir = std::env::temp_dir().join(format!("lab8-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("token");
        std::fs::write(&file, format!("{TOKEN}\n")).unwrap();
        let args = |token_file: Option<PathBuf>, no_auth| ApiAuthArgs { token_file, no_auth };
        assert!(matches!(args(Some(file.clone()), false).load(), Ok(ApiAuth::Token(t)) if t.matches(TOKEN.as_bytes())));
        assert!(matches!(args(Some(file.clone()), true).load(), Err(AuthConfigError::Both)));
        let missing = args(Some(dir.join("absent")), false).load().err().unwrap();
        assert!(missing.to_string().starts_with("API_TOKEN_FILE"), "{missing}");
        // No test sets API_TOKEN: with neither a file nor the env var, only the explicit opt-out serves.
        assert!(matches!(args(None, false).load(), Err(AuthConfigError::Missing)));
        assert!(matches!(args(None, true).load(), Ok(ApiAuth::Open)));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// For tests of the services that use this layer.
#[cfg(feature = "testing")]
pub mod testing {
    use std::time::Duration;

    use crate::client;

    /// A token for tests (the cluster makes a random one).
    pub const TEST_TOKEN: &str = "lab8-test-token-0123456789";

    /// `Authorization: Bearer TEST_TOKEN`.
    pub fn bearer() -> (&'static str, String) {
        ("authorization", format!("Bearer {TEST_TOKEN}"))
    }

    /// POSTs `body` to `url` without a token, with a wrong, a truncated and
    /// an extended one, and with another scheme: each must be a 401 naming
    /// the Bearer scheme. Returns the status with the right token.
    pub async fn assert_bearer_required(url: &str, body: &[u8]) -> u16 {
        let truncated = format!("Bearer {}", &TEST_TOKEN[..TEST_TOKEN.len() - 1]);
        let extended = format!("Bearer {TEST_TOKEN}x");
        let wrong = format!("Bearer {}", TEST_TOKEN.replace('0', "1"));
        let basic = format!("Basic {TEST_TOKEN}");
        for header in [None, Some(wrong.as_str()), Some(&truncated), Some(&extended), Some(&basic), Some("Bearer")] {
            let headers: Vec<(&str, &str)> = header.map(|h| vec![("authorization", h)]).unwrap_or_default();
            let response = client::request_with_headers("POST", url, &headers, body.to_vec(), Duration::from_secs(10))
                .await
                .expect("request");
            assert_eq!(response.status, 401, "{header:?}: {}", response.body);
            assert!(response.body.contains("bearer token"), "{}", response.body);
            assert!(!response.body.contains(TEST_TOKEN), "the token must not be echoed");
        }
        let (name, value) = bearer();
        client::request_with_headers("POST", url, &[(name, &value)], body.to_vec(), Duration::from_secs(10))
            .await
            .expect("request")
            .status
    }
}
