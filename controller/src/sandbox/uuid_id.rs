//! `uuid_id!`: a typed UUIDv7 id (sandboxes, users, volumes). One declaration writes `new`,
//! `from_uuid`, `as_uuid`, `Default`, `Display` and `FromStr`, so the id types cannot drift
//! apart and one kind of id is never passed where another is meant.

/// Declares `struct $name(Uuid)` with its constructors and text forms; see the module docs.
macro_rules! uuid_id {
    ($(#[$meta:meta])* $vis:vis struct $name:ident;) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        $vis struct $name(::uuid::Uuid);

        impl $name {
            /// A fresh, time-ordered id.
            pub fn new() -> Self {
                Self(::uuid::Uuid::now_v7())
            }

            /// Wraps a UUID read from the store or a URL.
            pub fn from_uuid(uuid: ::uuid::Uuid) -> Self {
                Self(uuid)
            }

            /// The underlying UUID.
            pub fn as_uuid(&self) -> ::uuid::Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                self.0.fmt(f)
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = ::uuid::Error;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                ::uuid::Uuid::parse_str(s).map(Self)
            }
        }
    };
}

pub(crate) use uuid_id;
