-- +goose Up
CREATE TABLE circle_kv (
    circle     TEXT    NOT NULL,
    key        TEXT    NOT NULL,
    value      BLOB    NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (circle, key)
) WITHOUT ROWID;

-- +goose Down
DROP TABLE circle_kv;
