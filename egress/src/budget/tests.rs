//! Budget tests: exact limits, release on drop, limit changes and concurrent opens.

use super::*;

#[test]
fn unlimited_counts_but_never_refuses() {
    let budget = Arc::new(Budget::unlimited());
    let permits: Vec<_> = (0..1000).map(|_| budget.open().unwrap()).collect();
    assert_eq!(budget.open_connections(), 1000);
    budget.add_bytes(u64::MAX / 2).unwrap();
    budget.add_bytes(u64::MAX / 2).unwrap();
    assert_eq!(budget.bytes_remaining(), None);
    drop(permits);
    assert_eq!(budget.open_connections(), 0);
}

#[test]
fn connection_limit_is_exact_and_drop_releases() {
    let budget = Arc::new(Budget::new(Some(2), None));
    let a = budget.open().unwrap();
    let b = budget.open().unwrap();
    let err = budget.open().unwrap_err();
    assert_eq!(err, BudgetExceeded::Connections { limit: 2 });
    assert_eq!(err.code(), "max_connections");
    drop(a);
    let c = budget.open().unwrap();
    assert_eq!(budget.open_connections(), 2);
    drop((b, c));
    assert_eq!(budget.open_connections(), 0);
}

#[test]
fn zero_connections_refuses_everything() {
    let budget = Arc::new(Budget::new(Some(0), None));
    assert_eq!(
        budget.open().unwrap_err(),
        BudgetExceeded::Connections { limit: 0 }
    );
}

#[test]
fn byte_limit_counts_up_and_down_and_refuses_past_the_limit() {
    let budget = Arc::new(Budget::new(None, Some(100)));
    budget.add_bytes(60).unwrap();
    budget.add_bytes(40).unwrap(); // exactly at the limit is still fine
    assert_eq!(budget.bytes_remaining(), Some(0));
    let err = budget.add_bytes(1).unwrap_err();
    assert_eq!(err, BudgetExceeded::Bytes { limit: 100 });
    assert_eq!(err.code(), "max_bytes");
    assert_eq!(budget.bytes_used(), 101, "moved bytes are recorded");
    // A spent budget refuses new connections too.
    assert_eq!(
        budget.open().unwrap_err(),
        BudgetExceeded::Bytes { limit: 100 }
    );
}

#[test]
fn set_limits_keeps_counts() {
    let budget = Arc::new(Budget::new(Some(1), Some(10)));
    let permit = budget.open().unwrap();
    budget.add_bytes(8).unwrap();
    budget.set_limits(Some(3), Some(20));
    assert_eq!(budget.max_connections(), Some(3));
    assert_eq!(budget.max_bytes(), Some(20));
    assert_eq!(budget.bytes_used(), 8);
    let more = [budget.open().unwrap(), budget.open().unwrap()];
    assert!(budget.open().is_err());
    // Lowering the limit below the open count keeps existing permits but refuses new ones.
    budget.set_limits(Some(1), None);
    assert!(budget.open().is_err());
    drop(more);
    drop(permit);
    assert!(budget.open().is_ok());
}

#[test]
fn concurrent_opens_never_exceed_the_limit() {
    let budget = Arc::new(Budget::new(Some(8), None));
    let granted = std::sync::atomic::AtomicU64::new(0);
    let max_seen = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..2000 {
                    if let Ok(p) = budget.open() {
                        granted.fetch_add(1, Ordering::Relaxed);
                        max_seen.fetch_max(budget.open_connections(), Ordering::Relaxed);
                        drop(p);
                    }
                }
            });
        }
    });
    assert!(granted.load(Ordering::Relaxed) > 0);
    assert!(max_seen.load(Ordering::Relaxed) <= 8);
    assert_eq!(budget.open_connections(), 0);
}
