//! Operating the controller: the offline `airlock admin` commands ([`admin`], with
//! [`backup`] and restore), the
//! deployment check ([`doctor`]), the first-boot admin ([`first_boot`]), the node's pool
//! document ([`pools`]) and the container health check ([`health`]).

pub mod admin;
pub mod backup;
pub mod doctor;
pub mod file_modes;
pub mod first_boot;
pub mod health;
pub mod pools;
pub mod store_lock;
