//! Integration tests of the public `Store` API against a real temp directory.

mod buckets;
mod common;
mod integrity;
mod listing;
mod maintenance;
mod multipart;
mod objects;
mod writable;
