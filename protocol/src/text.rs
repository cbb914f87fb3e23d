//! Trait impls and text reading shared by the identifiers that are written as their text
//! (container numbers, seal numbers, e-seal ids, operator ids, programmes).

/// The characters of an identifier as written: the `separators` dropped, the rest
/// upper-cased, each of which must be an ASCII letter or digit; one that is not comes as
/// `Err((position, found))`, its position counted from 1 among the characters kept.
pub(crate) fn identifier_chars<'a>(
    input: &'a str,
    separators: &'a [char],
) -> impl Iterator<Item = Result<char, (usize, char)>> + 'a {
    input
        .chars()
        .filter(|ch| !separators.contains(ch))
        .enumerate()
        .map(|(i, ch)| {
            if ch.is_ascii_alphanumeric() {
                Ok(ch.to_ascii_uppercase())
            } else {
                Err((i + 1, ch))
            }
        })
}

/// `Debug` as `Name(text)` and `FromStr` by the type's `parse`, for a type whose `Display`
/// writes its text.
macro_rules! debug_and_from_str_via_text {
    ($ty:ident, $err:ty) => {
        impl core::fmt::Debug for $ty {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                write!(f, concat!(stringify!($ty), "({})"), self)
            }
        }

        impl core::str::FromStr for $ty {
            type Err = $err;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }
    };
}

/// Serde as a string: serialised with `Display`, deserialised by `$parse` (the type's `parse`
/// unless named), a deserialiser's error saying `$what` was expected.
macro_rules! serde_via_text {
    ($ty:ty, $what:literal) => {
        serde_via_text!($ty, $what, <$ty>::parse);
    };
    ($ty:ty, $what:literal, $parse:expr) => {
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl serde::de::Visitor<'_> for V {
                    type Value = $ty;
                    fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                        f.write_str($what)
                    }
                    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                        ($parse)(v).map_err(E::custom)
                    }
                }
                d.deserialize_str(V)
            }
        }
    };
}
