//! What every BuildStream control-plane service is built from: the HTTP error
//! type, bearer-token authentication of users and nodes, identifiers and secrets.

#![warn(missing_docs)]

pub mod auth;
pub mod error;
pub mod http;
pub mod id;
pub mod json;
pub mod openapi;
pub mod secret;
pub mod telemetry;
pub mod text;

pub use auth::{AccessClaims, NodeAuth, NodeToken, StudioClaims, TokenKeys, UserAuth, WeakSecret};
pub use error::ApiError;
pub use json::{ApiJson, ApiPath, ApiQuery};
