-- Users; the email is unique (IF NOT EXISTS: files made before migrations adopt it).
CREATE TABLE IF NOT EXISTS users (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id TEXT NOT NULL UNIQUE,
    email TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    create_time TEXT NOT NULL
);
