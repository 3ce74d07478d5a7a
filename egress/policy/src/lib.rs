//! Pure egress policy core: parses request targets, classifies addresses and decides.
//! It performs no I/O and never panics on any input.
