//! Who is in each studio's room, kept in the shared cache so that every
//! instance of the studio service sees the same rooms.
//!
//! A room is one cache map. Each participant has a field for what they
//! are (their profile, written when they join) and one field for each thing
//! that changes on its own (admitted, last seen, sharing), so that a host
//! admitting a guest and the guest's own heartbeat, landing on different
//! instances at once, cannot overwrite each other. A guest the host removed
//! is marked for as long as their token could be used.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use buildstream_backend::SharedCache;
use buildstream_service::ApiError;
use serde::{Deserialize, Serialize};

/// How long a room is remembered after its last change.
const ROOM_TTL: Duration = Duration::from_secs(24 * 3600);

/// What a participant is; fixed while they are in the room, but for a
/// renamed host.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Profile {
    /// Participant id, derived from the studio and their subject.
    pub id: String,
    /// Display name.
    pub name: String,
    /// The studio's owner.
    pub host: bool,
    /// Their camera source.
    pub camera: String,
    /// Their screen source.
    pub screen: String,
}

/// A participant as the room knows them now.
#[derive(Debug, Clone)]
pub struct Participant {
    /// What they are.
    pub profile: Profile,
    /// Admitted by the host (hosts always are).
    pub admitted: bool,
    /// When they were last heard from, milliseconds since the epoch.
    pub last_seen_ms: u64,
    /// Says they are sharing their screen.
    pub sharing: bool,
}

/// The rooms of every studio.
#[derive(Clone)]
pub struct Rooms {
    cache: SharedCache,
}

impl Rooms {
    /// Rooms kept in `cache`.
    pub fn new(cache: SharedCache) -> Self {
        Self { cache }
    }

    /// Everyone in the room, by subject (user or guest id).
    pub async fn participants(
        &self,
        studio: &str,
    ) -> Result<HashMap<String, Participant>, ApiError> {
        let fields = self.cache.map_all(&room_key(studio)).await?;
        let mut participants = HashMap::new();
        for (field, value) in &fields {
            if field.contains('.') {
                continue;
            }
            let Ok(profile) = serde_json::from_str::<Profile>(value) else {
                continue;
            };
            let flag = |name: &str| fields.get(&format!("{field}.{name}"));
            participants.insert(
                field.clone(),
                Participant {
                    profile,
                    admitted: flag("admitted").is_some(),
                    last_seen_ms: flag("seen").and_then(|v| v.parse().ok()).unwrap_or(0),
                    sharing: flag("sharing").is_some_and(|v| v == "1"),
                },
            );
        }
        Ok(participants)
    }

    /// One participant, by subject.
    pub async fn participant(
        &self,
        studio: &str,
        sub: &str,
    ) -> Result<Option<Participant>, ApiError> {
        Ok(self.participants(studio).await?.remove(sub))
    }

    /// A participant by their public participant id, with their subject.
    pub async fn by_participant_id(
        &self,
        studio: &str,
        participant: &str,
    ) -> Result<Option<(String, Participant)>, ApiError> {
        Ok(self
            .participants(studio)
            .await?
            .into_iter()
            .find(|(_, p)| p.profile.id == participant))
    }

    /// Writes a participant's profile and marks them present.
    pub async fn enter(&self, studio: &str, sub: &str, profile: &Profile) -> Result<(), ApiError> {
        let profile =
            serde_json::to_string(profile).map_err(|err| ApiError::internal(err.to_string()))?;
        self.set(studio, sub, &profile).await?;
        self.touch(studio, sub).await
    }

    /// Marks a participant present now.
    pub async fn touch(&self, studio: &str, sub: &str) -> Result<(), ApiError> {
        self.set(studio, &format!("{sub}.seen"), &now_ms().to_string())
            .await
    }

    /// Marks a participant gone (they stay known, and admitted, for a
    /// return).
    pub async fn mark_offline(&self, studio: &str, sub: &str) -> Result<(), ApiError> {
        self.set(studio, &format!("{sub}.seen"), "0").await
    }

    /// Admits a participant.
    pub async fn admit(&self, studio: &str, sub: &str) -> Result<(), ApiError> {
        self.set(studio, &format!("{sub}.admitted"), "1").await
    }

    /// Records whether a participant shares their screen.
    pub async fn set_sharing(
        &self,
        studio: &str,
        sub: &str,
        sharing: bool,
    ) -> Result<(), ApiError> {
        let value = if sharing { "1" } else { "0" };
        self.set(studio, &format!("{sub}.sharing"), value).await
    }

    /// Takes a guest out of the room and refuses their token from now on,
    /// for as long as it could be valid.
    pub async fn remove(
        &self,
        studio: &str,
        sub: &str,
        token_lifetime: Duration,
    ) -> Result<(), ApiError> {
        self.cache
            .set(&removed_key(studio, sub), "1", token_lifetime)
            .await?;
        let key = room_key(studio);
        for field in [
            sub.to_owned(),
            format!("{sub}.admitted"),
            format!("{sub}.seen"),
            format!("{sub}.sharing"),
        ] {
            self.cache.map_delete(&key, &field).await?;
        }
        Ok(())
    }

    /// Whether the host removed this subject.
    pub async fn is_removed(&self, studio: &str, sub: &str) -> Result<bool, ApiError> {
        Ok(self.cache.get(&removed_key(studio, sub)).await?.is_some())
    }

    /// Forgets a deleted studio's room.
    pub async fn forget(&self, studio: &str) -> Result<(), ApiError> {
        // Removal marks expire with the tokens they refuse, and a deleted
        // studio refuses every token anyway.
        self.cache.delete(&room_key(studio)).await?;
        Ok(())
    }

    async fn set(&self, studio: &str, field: &str, value: &str) -> Result<(), ApiError> {
        self.cache
            .map_set(&room_key(studio), field, value, ROOM_TTL)
            .await?;
        Ok(())
    }
}

/// Milliseconds since the epoch: presence is compared across machines.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn room_key(studio: &str) -> String {
    format!("room:{studio}")
}

fn removed_key(studio: &str, sub: &str) -> String {
    format!("room-removed:{studio}:{sub}")
}
