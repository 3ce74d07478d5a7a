//! `airlock-egress` binary entry point.

fn main() {}
