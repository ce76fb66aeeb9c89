-- Ids and key digests are compared byte for byte.
CREATE TABLE studios (
    id            VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
    owner_id      VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    name          VARCHAR(255) NOT NULL,
    description   TEXT NOT NULL,
    output_width  BIGINT NOT NULL,
    output_height BIGINT NOT NULL,
    output_fps    BIGINT NOT NULL,
    -- Logo and background images travel in the scene, base64: megabytes.
    scene         LONGTEXT NOT NULL,
    created_at    VARCHAR(40) NOT NULL,
    updated_at    VARCHAR(40) NOT NULL,
    KEY studios_owner (owner_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

-- A source's stream key is a bearer secret: only its digest is stored.
CREATE TABLE sources (
    id          VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
    studio_id   VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    kind        VARCHAR(16) NOT NULL,
    name        VARCHAR(255) NOT NULL,
    key_digest  VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    created_at  VARCHAR(40) NOT NULL,
    UNIQUE KEY sources_key (key_digest),
    KEY sources_studio (studio_id),
    CONSTRAINT sources_studio_fk FOREIGN KEY (studio_id) REFERENCES studios (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE destinations (
    id          VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
    studio_id   VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    platform    VARCHAR(16) NOT NULL,
    name        VARCHAR(255) NOT NULL,
    url         TEXT NOT NULL,
    stream_key  TEXT NOT NULL,
    created_at  VARCHAR(40) NOT NULL,
    KEY destinations_studio (studio_id),
    CONSTRAINT destinations_studio_fk FOREIGN KEY (studio_id) REFERENCES studios (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE broadcasts (
    studio_id   VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
    origin_id   VARCHAR(128) NOT NULL,
    origin_url  TEXT NOT NULL,
    started_at  VARCHAR(40) NOT NULL,
    CONSTRAINT broadcasts_studio_fk FOREIGN KEY (studio_id) REFERENCES studios (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
