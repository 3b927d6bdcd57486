//! Integration tests of the public `Store` API against a real temp directory. The modules' tests run on the engine
//! `COFFER_TEST_ENGINE` names (`sql`: SQLite, `postgres`: PostgreSQL at `COFFER_TEST_POSTGRES_URL`; default: the
//! directory engine), except the tests of one engine's on-disk form, which use that engine's fixture.

mod buckets;
mod common;
mod integrity;
mod listing;
mod maintenance;
mod multipart;
mod objects;
mod sql_rows;
mod versions;
mod writable;
