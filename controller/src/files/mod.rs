//! Files in and out of a running sandbox or a volume.

pub mod tar;
