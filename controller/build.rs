//! Rebuilds the controller when a migration is added or changed: `sqlx::migrate!` embeds the
//! files at compile time, and cargo does not watch the folders by itself.
#![allow(clippy::print_stdout)]

fn main() {
    println!("cargo:rerun-if-changed=../migrations/sqlite");
    println!("cargo:rerun-if-changed=../migrations/postgres");
}
