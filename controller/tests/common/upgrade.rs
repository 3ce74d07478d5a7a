//! Upgrade tests start from an older schema: [`migrations_up_to`] is a backend's shipped
//! migrations up to a version, so a test can write rows the way an older controller did and
//! then open the store, which applies the rest.

use std::path::PathBuf;

use sqlx::migrate::Migrator;

/// `flavour`'s (`sqlite` or `postgres`) migrations numbered up to `version`, copied byte for
/// byte (so their checksums match the store's own); the files are read before this returns.
pub(crate) async fn migrations_up_to(flavour: &str, version: i64) -> Migrator {
    let source = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../migrations")
        .join(flavour);
    let dir = tempfile::tempdir().unwrap();
    for file in std::fs::read_dir(&source).unwrap() {
        let file = file.unwrap();
        let name = file.file_name().into_string().unwrap();
        let number: i64 = name[..4].parse().unwrap();
        if number <= version {
            std::fs::copy(file.path(), dir.path().join(&name)).unwrap();
        }
    }
    Migrator::new(dir.path()).await.unwrap()
}
