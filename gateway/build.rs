//! `sqlx::migrate!` embeds the files under `migrations/` when the crate compiles, and
//! nothing tells cargo that a new file there changes the crate: without this, a build
//! after adding a migration keeps the old list.

fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
