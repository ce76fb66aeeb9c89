CREATE TABLE studios (
    id            TEXT PRIMARY KEY,
    owner_id      TEXT NOT NULL,
    name          TEXT NOT NULL,
    description   TEXT NOT NULL DEFAULT '',
    output_width  INTEGER NOT NULL,
    output_height INTEGER NOT NULL,
    output_fps    INTEGER NOT NULL,
    scene         TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);
CREATE INDEX studios_owner ON studios(owner_id);

-- A source's stream key is a bearer secret: only its digest is stored.
CREATE TABLE sources (
    id          TEXT PRIMARY KEY,
    studio_id   TEXT NOT NULL REFERENCES studios(id) ON DELETE CASCADE,
    kind        TEXT NOT NULL,
    name        TEXT NOT NULL,
    key_digest  TEXT NOT NULL UNIQUE,
    created_at  TEXT NOT NULL
);
CREATE INDEX sources_studio ON sources(studio_id);

CREATE TABLE destinations (
    id          TEXT PRIMARY KEY,
    studio_id   TEXT NOT NULL REFERENCES studios(id) ON DELETE CASCADE,
    platform    TEXT NOT NULL,
    name        TEXT NOT NULL,
    url         TEXT NOT NULL,
    stream_key  TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE INDEX destinations_studio ON destinations(studio_id);

CREATE TABLE broadcasts (
    studio_id   TEXT PRIMARY KEY REFERENCES studios(id) ON DELETE CASCADE,
    origin_id   TEXT NOT NULL,
    origin_url  TEXT NOT NULL,
    started_at  TEXT NOT NULL
);
