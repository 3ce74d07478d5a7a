//! Certificates for Airlock.
