//! `string_enum!`: a persisted enum and its one spelling. The macro declares the enum and
//! writes, from a single table of `Variant = "text"` rows, its `ALL` array, `as_str`,
//! `Display` and `FromStr` (whose error is a [`super::ParseEnumError`] naming what was parsed),
//! so the stored, API and CLI spellings cannot drift apart.

/// Declares `enum $name` with `ALL`, `as_str`, `Display` and `FromStr`; see the module docs.
macro_rules! string_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident as $what:literal {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        $vis enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every value, in declaration order.
            $vis const ALL: [$name; <[()]>::len(&[$($crate::sandbox::string_enum!(@unit $variant)),+])] =
                [$(Self::$variant),+];

            /// The stored and wire spelling.
            $vis fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)+
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::sandbox::ParseEnumError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::ALL
                    .into_iter()
                    .find(|value| value.as_str() == s)
                    .ok_or_else(|| $crate::sandbox::ParseEnumError {
                        what: $what,
                        value: s.to_owned(),
                    })
            }
        }
    };
    (@unit $variant:ident) => {
        ()
    };
}

pub(crate) use string_enum;

#[cfg(test)]
mod tests {
    string_enum! {
        /// A test enum.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        enum Colour as "colour" {
            /// Red.
            Red = "red",
            /// Light blue.
            LightBlue = "light-blue",
        }
    }

    #[test]
    fn one_table_gives_every_spelling() {
        assert_eq!(Colour::ALL, [Colour::Red, Colour::LightBlue]);
        assert_eq!(Colour::LightBlue.as_str(), "light-blue");
        assert_eq!(Colour::LightBlue.to_string(), "light-blue");
        assert_eq!("red".parse(), Ok(Colour::Red));
        let error = "Red".parse::<Colour>().unwrap_err();
        assert_eq!(error.to_string(), "unknown colour `Red`");
    }
}
