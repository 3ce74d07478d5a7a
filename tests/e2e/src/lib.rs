//! End-to-end tests live under `tests/`; they need a Docker daemon and the images from
//! `make images`.
