//! Operating the controller: the offline `airlock admin` commands ([`admin`], with
//! [`backup`] and restore), the
//! deployment check ([`doctor`]), the first-boot admin ([`first_boot`]) and the container
//! health check ([`health`]).

pub mod admin;
pub mod backup;
pub mod doctor;
pub mod file_modes;
pub mod first_boot;
pub mod health;
pub mod store_lock;
