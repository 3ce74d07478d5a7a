//! The Airlock controller library.
