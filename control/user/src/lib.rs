//! The user service: accounts, sign-in and the tokens every other service
//! trusts.
//!
//! Passwords are hashed with Argon2id. Sign-in returns a short-lived JWT
//! access token and an opaque refresh token; refreshing rotates the refresh
//! token, and presenting an already-rotated one revokes its whole family
//! (it has leaked: someone else holds the newer one).

#![warn(missing_docs)]

mod password;
mod sessions;
mod store;

use axum::extract::{FromRef, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use buildstream_backend::{Database, DbError, EventSender, Migrations, SharedCache};
use buildstream_service::auth::ACCESS_TOKEN_TTL;
use buildstream_service::openapi::{BearerSchemes, ErrorBody};
use buildstream_service::{ApiError, ApiJson, TokenKeys, UserAuth};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

pub use sessions::{RefreshTokens, REFRESH_TOKEN_TTL};
pub use store::{User, Users};

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static MYSQL_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/mysql");

/// The user service's schema, for each kind of database.
pub const MIGRATIONS: Migrations = Migrations {
    sqlite: &SQLITE_MIGRATIONS,
    mysql: &MYSQL_MIGRATIONS,
};

/// Shared state of the user service's handlers.
#[derive(Clone)]
pub struct UserService {
    db: Database,
    users: Users,
    refresh_tokens: RefreshTokens,
    cache: SharedCache,
    events: EventSender,
    keys: TokenKeys,
}

impl FromRef<UserService> for TokenKeys {
    fn from_ref(service: &UserService) -> TokenKeys {
        service.keys.clone()
    }
}

impl UserService {
    /// A service over an opened database, which it migrates, the shared
    /// cache its refresh tokens live in, and the sender of its events
    /// (`user.registered`).
    pub async fn new(
        db: Database,
        cache: SharedCache,
        events: EventSender,
        keys: TokenKeys,
    ) -> Result<Self, DbError> {
        db.migrate(MIGRATIONS).await?;
        Ok(Self {
            users: Users::new(db.clone()),
            refresh_tokens: RefreshTokens::new(cache.clone()),
            db,
            cache,
            events,
            keys,
        })
    }

    /// Whether the database and the cache answer: the service is ready
    /// only when both do.
    pub async fn ready(&self) -> Result<(), String> {
        buildstream_backend::ready(&self.db, self.cache.as_ref()).await
    }

    /// The service's routes, under `/api/v1`.
    pub fn router(self) -> Router {
        Router::new()
            .route("/api/v1/users", post(register))
            .route("/api/v1/users/me", get(me))
            .route("/api/v1/sessions", post(sign_in).delete(sign_out))
            .route("/api/v1/sessions/refresh", post(refresh))
            .with_state(self)
            .merge(buildstream_service::openapi::route(openapi()))
    }
}

/// The user service's API, as served at `/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "BuildStream user service",
        description = "Accounts, sign-in, and the tokens every other service trusts."
    ),
    paths(register, me, sign_in, refresh, sign_out),
    components(schemas(ErrorBody)),
    modifiers(&BearerSchemes),
    tags((name = "users", description = "Accounts and sessions"))
)]
struct ApiDoc;

/// `POST /api/v1/users` body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct Registration {
    /// Sign-in e-mail address, unique (case-insensitive).
    pub email: String,
    /// At least 8 characters.
    pub password: String,
    /// Name shown in studios, 1-64 characters.
    pub display_name: String,
}

/// A user as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    /// User id.
    pub id: String,
    /// E-mail address.
    pub email: String,
    /// Display name.
    pub display_name: String,
    /// RFC 3339 creation time.
    pub created_at: String,
}

impl From<User> for UserView {
    fn from(user: User) -> Self {
        Self {
            id: user.id,
            email: user.email,
            display_name: user.display_name,
            created_at: user.created_at,
        }
    }
}

/// `POST /api/v1/sessions` body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct Credentials {
    /// E-mail address.
    pub email: String,
    /// Password.
    pub password: String,
}

/// Body of `POST /api/v1/sessions/refresh` and `DELETE /api/v1/sessions`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RefreshRequest {
    /// The refresh token from the last sign-in or refresh.
    pub refresh_token: String,
}

/// Tokens answered by sign-in and refresh.
#[derive(Debug, Serialize, ToSchema)]
pub struct Tokens {
    /// JWT for `Authorization: Bearer`.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// Opaque token to get the next access token; single use.
    pub refresh_token: String,
}

#[utoipa::path(
    post,
    path = "/api/v1/users",
    tag = "users",
    request_body = Registration,
    responses(
        (status = 201, description = "Registered", body = UserView),
        (status = 400, description = "Invalid e-mail, password or name", body = ErrorBody),
        (status = 409, description = "The e-mail is taken", body = ErrorBody),
    ),
)]
async fn register(
    State(service): State<UserService>,
    ApiJson(body): ApiJson<Registration>,
) -> Result<(StatusCode, Json<UserView>), ApiError> {
    let email = body.email.trim();
    validate_email(email)?;
    password::validate(&body.password)?;
    let display_name = body.display_name.trim();
    if display_name.is_empty()
        || display_name.chars().count() > 64
        || display_name
            .chars()
            .any(buildstream_service::text::is_unprintable)
    {
        return Err(ApiError::invalid(
            "invalid_display_name",
            "display_name must be 1-64 printable characters on one line",
        ));
    }
    let hash = password::hash(body.password).await?;
    let user = service.users.create(email, &hash, display_name).await?;
    service.events.send(buildstream_service::telemetry::event(
        "user.registered",
        serde_json::json!({"user_id": user.id, "display_name": user.display_name}),
    ));
    tracing::info!(user = %user.id, "user registered");
    Ok((StatusCode::CREATED, Json(user.into())))
}

#[utoipa::path(
    get,
    path = "/api/v1/users/me",
    tag = "users",
    security(("user" = [])),
    responses(
        (status = 200, description = "The signed-in user", body = UserView),
        (status = 401, description = "No valid access token", body = ErrorBody),
    ),
)]
async fn me(
    State(service): State<UserService>,
    auth: UserAuth,
) -> Result<Json<UserView>, ApiError> {
    let user = service
        .users
        .by_id(&auth.user_id)
        .await?
        .ok_or_else(|| ApiError::not_found("user"))?;
    Ok(Json(user.into()))
}

#[utoipa::path(
    post,
    path = "/api/v1/sessions",
    tag = "users",
    request_body = Credentials,
    responses(
        (status = 200, description = "Signed in", body = Tokens),
        (status = 401, description = "Wrong e-mail or password", body = ErrorBody),
        (status = 429, description = "Too many attempts (at the gateway)", body = ErrorBody),
    ),
)]
async fn sign_in(
    State(service): State<UserService>,
    ApiJson(body): ApiJson<Credentials>,
) -> Result<Json<Tokens>, ApiError> {
    let refused = || ApiError::unauthorized("invalid email or password");
    let user = service.users.by_email(body.email.trim()).await?;
    // Verify against a fixed hash when the user does not exist so that the
    // answer takes as long either way and does not reveal which e-mails exist.
    let stored = user
        .as_ref()
        .map(|u| u.password_hash.clone())
        .unwrap_or_else(|| password::DECOY_HASH.to_owned());
    let valid = password::verify(body.password, stored).await?;
    let user = match user {
        Some(user) if valid => user,
        _ => return Err(refused()),
    };
    let family = buildstream_service::id::random("fam_");
    tokens_for(&service, &user.id, &family).await.map(Json)
}

#[utoipa::path(
    post,
    path = "/api/v1/sessions/refresh",
    tag = "users",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "New tokens; the refresh token given is spent", body = Tokens),
        (status = 401, description = "Unknown, expired or replayed refresh token (a replay revokes its family)", body = ErrorBody),
    ),
)]
async fn refresh(
    State(service): State<UserService>,
    ApiJson(body): ApiJson<RefreshRequest>,
) -> Result<Json<Tokens>, ApiError> {
    let digest = buildstream_service::secret::digest(&body.refresh_token);
    let (user_id, family) = service.refresh_tokens.rotate(&digest).await?;
    tokens_for(&service, &user_id, &family).await.map(Json)
}

#[utoipa::path(
    delete,
    path = "/api/v1/sessions",
    tag = "users",
    request_body = RefreshRequest,
    responses((status = 204, description = "The session's refresh tokens are revoked")),
)]
async fn sign_out(
    State(service): State<UserService>,
    ApiJson(body): ApiJson<RefreshRequest>,
) -> Result<StatusCode, ApiError> {
    let digest = buildstream_service::secret::digest(&body.refresh_token);
    service.refresh_tokens.revoke_family_of(&digest).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn tokens_for(
    service: &UserService,
    user_id: &str,
    family: &str,
) -> Result<Tokens, ApiError> {
    let refresh_token = buildstream_service::secret::generate("rt_");
    let digest = buildstream_service::secret::digest(&refresh_token);
    service
        .refresh_tokens
        .store(&digest, user_id, family)
        .await?;
    Ok(Tokens {
        access_token: service.keys.issue(user_id)?,
        token_type: "Bearer",
        expires_in: ACCESS_TOKEN_TTL.as_secs(),
        refresh_token,
    })
}

fn validate_email(email: &str) -> Result<(), ApiError> {
    let valid = email.len() <= 254
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && domain.contains('.') && !domain.starts_with('.')
        })
        && !email.chars().any(char::is_whitespace);
    if valid {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "invalid_email",
            "email is not a valid address",
        ))
    }
}
