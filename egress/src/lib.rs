//! The `airlock-egress` proxy: an HTTP forward and CONNECT proxy that resolves names itself,
//! judges every answer with `airlock-egress-policy`, and dials only the address it checked.
