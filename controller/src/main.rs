//! `airlock` binary entry point.

fn main() {}
