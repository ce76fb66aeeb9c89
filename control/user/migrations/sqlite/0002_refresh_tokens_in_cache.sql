-- Refresh tokens now live in the shared cache, where every instance of the
-- user service sees them and they expire by themselves.
DROP TABLE refresh_tokens;
