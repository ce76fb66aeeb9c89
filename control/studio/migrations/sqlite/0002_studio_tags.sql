-- A studio's tags: a JSON array of lowercase words, for search filters.
ALTER TABLE studios ADD COLUMN tags TEXT NOT NULL DEFAULT '[]';
