//! Secrets: values sealed at rest with the controller's key ([`vault`]), opened only into a
//! container's environment at create.

pub mod vault;
