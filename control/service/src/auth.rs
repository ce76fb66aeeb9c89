//! Bearer authentication: users carry short-lived JWT access tokens issued
//! by the user service; media nodes carry a shared node token.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::ApiError;

/// Header in which the gateway names the signed-in user of a request it
/// forwards, after checking their access token.
pub const USER_HEADER: &str = "x-buildstream-user";

/// Header carrying the gateway's service token beside [`USER_HEADER`]:
/// services believe the user header only with it.
pub const GATEWAY_TOKEN_HEADER: &str = "x-buildstream-gateway";

/// How long an access token is valid.
pub const ACCESS_TOKEN_TTL: Duration = Duration::from_secs(15 * 60);

/// Clock skew tolerated between the issuing and the verifying service.
const LEEWAY_SECS: u64 = 30;

/// Shortest accepted signing secret: HS256 wants at least its output size.
const MIN_SECRET_BYTES: usize = 32;

/// The token signing secret is shorter than 32 bytes.
#[derive(Debug, thiserror::Error)]
#[error("token secret must be at least 32 bytes")]
pub struct WeakSecret;

/// Claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessClaims {
    /// The user id.
    pub sub: String,
    /// Issued at, seconds since the epoch.
    pub iat: u64,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// Token type; always `access` (refresh tokens are opaque, not JWTs).
    pub typ: String,
}

/// Claims of a studio token: a scoped pass into one studio for someone who
/// may hold no account (a guest) or who only watches (a viewer).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StudioClaims {
    /// Who holds it: a user id, or an id made for a guest or viewer.
    pub sub: String,
    /// The one studio it opens.
    pub studio: String,
    /// `host`, `guest` or `viewer`.
    pub role: String,
    /// Display name, for guests.
    #[serde(default)]
    pub name: String,
    /// Issued at, seconds since the epoch.
    pub iat: u64,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// Token type; always `studio`.
    pub typ: String,
}

/// Keys to sign and verify access tokens (HMAC-SHA256; the algorithm is
/// pinned, a token claiming any other is refused).
#[derive(Clone)]
pub struct TokenKeys {
    inner: Arc<Keys>,
}

struct Keys {
    /// The `kid` new tokens carry.
    signing_id: String,
    encoding: EncodingKey,
    /// Every key tokens are accepted from, the signing one first.
    verifying: Vec<(String, DecodingKey)>,
    /// The gateway's token, when requests may come through one.
    gateway: Option<NodeToken>,
}

impl TokenKeys {
    /// Keys from a shared secret of at least 32 bytes. Tokens are signed
    /// with it and carry its key id (`kid`): a digest of the secret, so that
    /// every service given the secret names it alike.
    pub fn from_secret(secret: &[u8]) -> Result<Self, WeakSecret> {
        let (Ok(encoding), Some(decoding)) = (EncodingKey::from_secret(secret), decoding(secret))
        else {
            return Err(WeakSecret);
        };
        let signing_id = key_id(secret);
        Ok(Self {
            inner: Arc::new(Keys {
                verifying: vec![(signing_id.clone(), decoding)],
                signing_id,
                encoding,
                gateway: None,
            }),
        })
    }

    /// The same keys, also accepting tokens signed with `previous` secrets:
    /// how a secret is rotated without signing everyone out. Tokens signed
    /// with a secret no longer listed are refused.
    pub fn accepting_previous(self, previous: &[&[u8]]) -> Result<Self, WeakSecret> {
        let mut verifying = self.inner.verifying.clone();
        for secret in previous {
            let key = decoding(secret).ok_or(WeakSecret)?;
            let id = key_id(secret);
            if !verifying.iter().any(|(known, _)| *known == id) {
                verifying.push((id, key));
            }
        }
        Ok(self.rebuilt(verifying, self.inner.gateway.clone()))
    }

    /// The same keys, also believing a gateway that presents `token` about
    /// who the caller is, without checking the access token again.
    pub fn trusting_gateway(self, token: NodeToken) -> Self {
        self.rebuilt(self.inner.verifying.clone(), Some(token))
    }

    fn rebuilt(&self, verifying: Vec<(String, DecodingKey)>, gateway: Option<NodeToken>) -> Self {
        Self {
            inner: Arc::new(Keys {
                signing_id: self.inner.signing_id.clone(),
                encoding: self.inner.encoding.clone(),
                verifying,
                gateway,
            }),
        }
    }

    /// The key id new tokens carry.
    pub fn key_id(&self) -> &str {
        &self.inner.signing_id
    }

    /// The user a trusted gateway vouches for in these headers.
    pub fn vouched_user(&self, headers: &axum::http::HeaderMap) -> Option<String> {
        let gateway = self.inner.gateway.as_ref()?;
        let presented = headers.get(GATEWAY_TOKEN_HEADER)?.to_str().ok()?;
        if !gateway.accepts(presented) {
            return None;
        }
        let user = headers.get(USER_HEADER)?.to_str().ok()?;
        (!user.is_empty()).then(|| user.to_owned())
    }

    /// Signs a new access token for `user_id`.
    pub fn issue(&self, user_id: &str) -> Result<String, ApiError> {
        let now = unix_now();
        self.sign(&AccessClaims {
            sub: user_id.to_owned(),
            iat: now,
            exp: now + ACCESS_TOKEN_TTL.as_secs(),
            typ: "access".to_owned(),
        })
    }

    /// Signs a studio token for `sub` in `studio` as `role` (with a
    /// display `name` for guests), valid for `ttl`.
    pub fn issue_studio(
        &self,
        sub: &str,
        studio: &str,
        role: &str,
        name: &str,
        ttl: Duration,
    ) -> Result<String, ApiError> {
        let now = unix_now();
        self.sign(&StudioClaims {
            sub: sub.to_owned(),
            studio: studio.to_owned(),
            role: role.to_owned(),
            name: name.to_owned(),
            iat: now,
            exp: now + ttl.as_secs(),
            typ: "studio".to_owned(),
        })
    }

    fn sign(&self, claims: &impl Serialize) -> Result<String, ApiError> {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.inner.signing_id.clone());
        jsonwebtoken::encode(&header, claims, &self.inner.encoding)
            .map_err(|err| ApiError::internal(format!("signing token: {err}")))
    }

    /// Verifies a studio token and returns its claims.
    pub fn verify_studio(&self, token: &str) -> Result<StudioClaims, ApiError> {
        let claims: StudioClaims = self.decode(token, "studio token")?;
        if claims.typ != "studio" {
            return Err(ApiError::unauthorized("not a studio token"));
        }
        Ok(claims)
    }

    /// Verifies an access token and returns its claims.
    pub fn verify(&self, token: &str) -> Result<AccessClaims, ApiError> {
        let claims: AccessClaims = self.decode(token, "access token")?;
        if claims.typ != "access" {
            return Err(ApiError::unauthorized("not an access token"));
        }
        Ok(claims)
    }

    /// Checks signature (HS256 only, with the key its `kid` names; the
    /// signing key when it names none), expiry with [`LEEWAY_SECS`] of
    /// clock skew, and the claims' shape.
    fn decode<C: serde::de::DeserializeOwned>(
        &self,
        token: &str,
        what: &str,
    ) -> Result<C, ApiError> {
        let invalid = || ApiError::unauthorized(format!("invalid {what}"));
        let header = jsonwebtoken::decode_header(token).map_err(|_| invalid())?;
        let key = match &header.kid {
            Some(kid) => self
                .inner
                .verifying
                .iter()
                .find(|(id, _)| id == kid)
                .map(|(_, key)| key)
                .ok_or_else(|| {
                    ApiError::unauthorized(format!("{what} signed with an unknown key"))
                })?,
            None => &self.inner.verifying[0].1,
        };
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_SECS;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let data =
            jsonwebtoken::decode::<C>(token, key, &validation).map_err(|err| match err.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                    ApiError::unauthorized(format!("{what} expired"))
                }
                _ => invalid(),
            })?;
        Ok(data.claims)
    }
}

fn decoding(secret: &[u8]) -> Option<DecodingKey> {
    if secret.len() < MIN_SECRET_BYTES {
        return None;
    }
    DecodingKey::from_secret(secret).ok()
}

/// A secret's key id: the start of its SHA-256, which names it without
/// revealing anything of it.
fn key_id(secret: &[u8]) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(secret);
    format!("k{}", hex::encode(&digest[..6]))
}

/// The authenticated user of a request.
#[derive(Debug, Clone)]
pub struct UserAuth {
    /// The user id.
    pub user_id: String,
}

impl<S> FromRequestParts<S> for UserAuth
where
    TokenKeys: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let keys = TokenKeys::from_ref(state);
        // Checked once, at the gateway.
        if let Some(user_id) = keys.vouched_user(&parts.headers) {
            return Ok(UserAuth { user_id });
        }
        let token = bearer(parts).ok_or_else(|| ApiError::unauthorized("bearer token required"))?;
        let claims = keys.verify(token)?;
        Ok(UserAuth {
            user_id: claims.sub,
        })
    }
}

/// The shared secret media nodes present to the control plane and the
/// control plane presents to origins.
#[derive(Clone)]
pub struct NodeToken(Arc<str>);

impl NodeToken {
    /// Wraps the configured token.
    pub fn new(token: &str) -> Self {
        Self(token.into())
    }

    /// The token, for outgoing requests.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Constant-time comparison with a presented token.
    pub fn accepts(&self, presented: &str) -> bool {
        self.0.as_bytes().ct_eq(presented.as_bytes()).into()
    }
}

/// Proof that a request came from a media node holding the node token.
#[derive(Debug, Clone, Copy)]
pub struct NodeAuth;

impl<S> FromRequestParts<S> for NodeAuth
where
    NodeToken: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let token = bearer(parts).ok_or_else(|| ApiError::unauthorized("node token required"))?;
        if NodeToken::from_ref(state).accepts(token) {
            Ok(NodeAuth)
        } else {
            Err(ApiError::unauthorized("invalid node token"))
        }
    }
}

fn bearer(parts: &Parts) -> Option<&str> {
    bearer_token(&parts.headers)
}

/// The token of an `Authorization: Bearer …` header (scheme in any case).
pub fn bearer_token(headers: &axum::http::HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_token_verifies() {
        let keys = TokenKeys::from_secret(b"0123456789abcdef0123456789abcdef").unwrap();
        let token = keys.issue("u_1").unwrap();
        assert_eq!(keys.verify(&token).unwrap().sub, "u_1");
    }

    #[test]
    fn token_from_other_key_is_refused() {
        let keys = TokenKeys::from_secret(b"0123456789abcdef0123456789abcdef").unwrap();
        let other = TokenKeys::from_secret(b"another secret, also 32 bytes!!!").unwrap();
        let token = other.issue("u_1").unwrap();
        assert_eq!(keys.verify(&token).unwrap_err().code, "unauthorized");
    }

    #[test]
    fn expired_token_is_refused() {
        let keys = TokenKeys::from_secret(b"0123456789abcdef0123456789abcdef").unwrap();
        let claims = AccessClaims {
            sub: "u_1".into(),
            iat: 1,
            exp: unix_now() - LEEWAY_SECS - 5,
            typ: "access".into(),
        };
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &keys.inner.encoding,
        )
        .unwrap();
        assert!(keys.verify(&token).unwrap_err().message.contains("expired"));
    }

    #[test]
    fn unsigned_token_is_refused() {
        let keys = TokenKeys::from_secret(b"0123456789abcdef0123456789abcdef").unwrap();
        // {"alg":"none"} header with valid-looking claims and no signature.
        let token = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ1XzEiLCJpYXQiOjEsImV4cCI6OTk5OTk5OTk5OSwidHlwIjoiYWNjZXNzIn0.";
        assert!(keys.verify(token).is_err());
    }

    #[test]
    fn tokens_name_their_key_and_rotated_secrets_keep_working_while_listed() {
        let old_secret = b"the secret we are rotating away!";
        let new_secret = b"the secret we are rotating to!!!";
        let old = TokenKeys::from_secret(old_secret).unwrap();
        let issued_before = old.issue("u_1").unwrap();
        let header = jsonwebtoken::decode_header(&issued_before).unwrap();
        assert_eq!(header.kid.as_deref(), Some(old.key_id()));

        let rotated = TokenKeys::from_secret(new_secret)
            .unwrap()
            .accepting_previous(&[old_secret])
            .unwrap();
        assert_eq!(rotated.verify(&issued_before).unwrap().sub, "u_1");
        let issued_after = rotated.issue("u_2").unwrap();
        assert_ne!(
            jsonwebtoken::decode_header(&issued_after).unwrap().kid,
            header.kid
        );
        assert!(
            old.verify(&issued_after).is_err(),
            "the old key does not know the new one"
        );

        // Once the old secret is dropped, its tokens are refused.
        let only_new = TokenKeys::from_secret(new_secret).unwrap();
        let refused = only_new.verify(&issued_before).unwrap_err();
        assert!(
            refused.message.contains("unknown key"),
            "{}",
            refused.message
        );
        assert!(TokenKeys::from_secret(new_secret)
            .unwrap()
            .accepting_previous(&[b"short"])
            .is_err());
    }

    #[test]
    fn a_token_claiming_another_algorithm_is_refused_even_with_the_right_secret() {
        let secret = b"0123456789abcdef0123456789abcdef";
        let keys = TokenKeys::from_secret(secret).unwrap();
        let claims = AccessClaims {
            sub: "u_1".into(),
            iat: 1,
            exp: unix_now() + 60,
            typ: "access".into(),
        };
        for algorithm in [Algorithm::HS384, Algorithm::HS512] {
            let mut header = Header::new(algorithm);
            header.kid = Some(keys.key_id().to_owned());
            let token =
                jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(secret).unwrap())
                    .unwrap();
            assert!(keys.verify(&token).is_err(), "{algorithm:?}");
        }
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(AUTHORIZATION, "bearer abc".parse().unwrap());
        assert_eq!(bearer_token(&headers), Some("abc"));
        headers.insert(AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer_token(&headers), None);
    }

    #[test]
    fn node_token_compares_exactly() {
        let token = NodeToken::new("secret-token");
        assert!(token.accepts("secret-token"));
        assert!(!token.accepts("secret-toke"));
        assert!(!token.accepts(""));
    }

    #[test]
    fn studio_tokens_and_access_tokens_do_not_stand_in_for_each_other() {
        let keys = TokenKeys::from_secret(b"0123456789abcdef0123456789abcdef").unwrap();
        let studio = keys
            .issue_studio("v_1", "st_1", "viewer", "", Duration::from_secs(60))
            .unwrap();
        let claims = keys.verify_studio(&studio).unwrap();
        assert_eq!(
            (claims.studio.as_str(), claims.role.as_str()),
            ("st_1", "viewer")
        );
        assert!(
            keys.verify(&studio).is_err(),
            "a studio token is no access token"
        );
        let access = keys.issue("u_1").unwrap();
        assert!(
            keys.verify_studio(&access).is_err(),
            "nor the other way round"
        );
        let other = TokenKeys::from_secret(b"another secret, also 32 bytes!!!").unwrap();
        assert!(other.verify_studio(&studio).is_err());
    }

    #[test]
    fn expired_studio_token_is_refused() {
        let keys = TokenKeys::from_secret(b"0123456789abcdef0123456789abcdef").unwrap();
        let claims = StudioClaims {
            sub: "v_1".into(),
            studio: "st_1".into(),
            role: "viewer".into(),
            name: String::new(),
            iat: 1,
            exp: unix_now() - LEEWAY_SECS - 5,
            typ: "studio".into(),
        };
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &keys.inner.encoding,
        )
        .unwrap();
        assert!(keys
            .verify_studio(&token)
            .unwrap_err()
            .message
            .contains("expired"));
    }
}
