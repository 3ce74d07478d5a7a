//! The `tables` line: every table's row count and, where the backend can say, its size on
//! disk with indexes (Postgres always; SQLite when built with `dbstat`), and the database's
//! total, so an operator sees what grows (docs/operator.md, "Every table bounded").

use super::{Check, Verdict};
use crate::store::Store;

/// One line: the database size, then `table rows[/size]` for each table, largest first.
pub(super) async fn check(store: &Store) -> Check {
    let name = "tables";
    let (sizes, total) = match (store.table_sizes().await, store.database_bytes().await) {
        (Ok(sizes), Ok(total)) => (sizes, total),
        (Err(error), _) | (_, Err(error)) => {
            return Check::new(name, Verdict::Fail, error.to_string(), "see store")
        }
    };
    let mut sizes = sizes;
    sizes.sort_by(|a, b| (b.rows, &a.name).cmp(&(a.rows, &b.name)));
    let tables: Vec<String> = sizes
        .iter()
        .map(|t| match t.bytes {
            Some(bytes) => format!("{} {} rows/{}", t.name, t.rows, human(bytes)),
            None => format!("{} {} rows", t.name, t.rows),
        })
        .collect();
    Check::pass(
        name,
        format!("database {}: {}", human(total), tables.join(", ")),
    )
}

/// `bytes` as B, KiB, MiB or GiB with one decimal.
pub(crate) fn human(bytes: i64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    #[allow(clippy::cast_precision_loss)] // A size to one decimal.
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_line_names_every_table_with_its_rows() {
        let store = Store::sqlite_in_memory().await.unwrap();
        let check = check(&store).await;
        assert_eq!(check.verdict, Verdict::Pass, "{}", check.detail);
        assert!(check.detail.starts_with("database "), "{}", check.detail);
        for table in ["egress_events", "audit", "sessions", "secrets", "users"] {
            assert!(
                check.detail.contains(&format!("{table} 0 rows")),
                "{table}: {}",
                check.detail
            );
        }
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human(512), "512 B");
        assert_eq!(human(2_621_440), "2.5 MiB");
    }
}
