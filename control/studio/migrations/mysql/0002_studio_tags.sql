-- A studio's tags: a JSON array of lowercase words, for search filters.
ALTER TABLE studios ADD COLUMN tags VARCHAR(1024) NOT NULL DEFAULT '[]';
