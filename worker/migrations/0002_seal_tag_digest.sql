-- The tag digest (keccak256 of the chunk tags, 0x + 64 hex) of the file sealed with the key in
-- encrypted_secret, committed with (or after) that key and before the file is renamed into place: a
-- sealed file on disk is used only when its tags give this digest (crash-safe sealing).
ALTER TABLE tasks ADD COLUMN seal_tag_digest TEXT;
