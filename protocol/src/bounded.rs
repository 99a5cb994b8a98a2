//! Length-bounded containers for decoded messages.
//!
//! Every string, byte string and list that arrives from the network is one of
//! these types, so a decoder refuses an over-long field as soon as it reads the
//! length prefix, before it allocates for the contents.

use core::fmt;
use core::marker::PhantomData;
use core::ops::Deref;

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The longest prefix of `s` of at most `max` bytes that ends on a
/// character boundary (to cut text for a bounded field without splitting a
/// character, and without the panic of `String::truncate` inside one).
pub fn prefix(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}

/// Returned when a value is longer than its field allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("value is {len} long, the limit is {max}")]
pub struct TooLong {
    /// The length offered.
    pub len: usize,
    /// The limit of the field.
    pub max: usize,
}

/// A UTF-8 string of at most `N` bytes.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BoundedString<const N: usize>(String);

impl<const N: usize> BoundedString<N> {
    /// Wraps `s` when it is at most `N` bytes long.
    pub fn new(s: impl Into<String>) -> Result<Self, TooLong> {
        let s = s.into();
        if s.len() > N {
            return Err(TooLong {
                len: s.len(),
                max: N,
            });
        }
        Ok(Self(s))
    }

    /// The string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<const N: usize> Deref for BoundedString<N> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<const N: usize> fmt::Debug for BoundedString<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl<const N: usize> fmt::Display for BoundedString<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl<const N: usize> Serialize for BoundedString<N> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de, const N: usize> Deserialize<'de> for BoundedString<N> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<const N: usize>;
        impl<const N: usize> Visitor<'_> for V<N> {
            type Value = BoundedString<N>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a string of at most {N} bytes")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                BoundedString::new(v).map_err(|e| E::custom(e))
            }
        }
        d.deserialize_str(V::<N>)
    }
}

/// A list of at most `N` elements.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct BoundedVec<T, const N: usize>(Vec<T>);

impl<T, const N: usize> BoundedVec<T, N> {
    /// Wraps `v` when it has at most `N` elements.
    pub fn new(v: Vec<T>) -> Result<Self, TooLong> {
        if v.len() > N {
            return Err(TooLong {
                len: v.len(),
                max: N,
            });
        }
        Ok(Self(v))
    }

    /// The elements.
    pub fn as_slice(&self) -> &[T] {
        &self.0
    }

    /// Gives up the bound and returns the list.
    pub fn into_vec(self) -> Vec<T> {
        self.0
    }
}

impl<T, const N: usize> Default for BoundedVec<T, N> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<T, const N: usize> Deref for BoundedVec<T, N> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.0
    }
}

impl<T: fmt::Debug, const N: usize> fmt::Debug for BoundedVec<T, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl<T: Serialize, const N: usize> Serialize for BoundedVec<T, N> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de, T: Deserialize<'de>, const N: usize> Deserialize<'de> for BoundedVec<T, N> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T, const N: usize>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>, const N: usize> Visitor<'de> for V<T, N> {
            type Value = BoundedVec<T, N>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a list of at most {N} elements")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let hint = seq.size_hint().unwrap_or(0);
                if hint > N {
                    return Err(de::Error::custom(TooLong { len: hint, max: N }));
                }
                let mut out = Vec::with_capacity(hint);
                while let Some(item) = seq.next_element()? {
                    if out.len() == N {
                        return Err(de::Error::custom(TooLong {
                            len: N.saturating_add(1),
                            max: N,
                        }));
                    }
                    out.push(item);
                }
                Ok(BoundedVec(out))
            }
        }
        d.deserialize_seq(V::<T, N>(PhantomData))
    }
}

/// A byte string of at most `N` bytes.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct BoundedBytes<const N: usize>(Vec<u8>);

impl<const N: usize> BoundedBytes<N> {
    /// Wraps `v` when it is at most `N` bytes long.
    pub fn new(v: Vec<u8>) -> Result<Self, TooLong> {
        if v.len() > N {
            return Err(TooLong {
                len: v.len(),
                max: N,
            });
        }
        Ok(Self(v))
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.0
    }

    /// The bytes, owned.
    pub fn into_inner(self) -> Vec<u8> {
        self.0
    }
}

impl<const N: usize> Deref for BoundedBytes<N> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl<const N: usize> fmt::Debug for BoundedBytes<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes", self.0.len())
    }
}

impl<const N: usize> Serialize for BoundedBytes<N> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de, const N: usize> Deserialize<'de> for BoundedBytes<N> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<const N: usize>;
        impl<const N: usize> Visitor<'_> for V<N> {
            type Value = BoundedBytes<N>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a byte string of at most {N} bytes")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
                if v.len() > N {
                    return Err(E::custom(TooLong {
                        len: v.len(),
                        max: N,
                    }));
                }
                Ok(BoundedBytes(v.to_vec()))
            }
        }
        d.deserialize_bytes(V::<N>)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_prefix_never_splits_a_character() {
        assert_eq!(super::prefix("aé€", 2), "a");
        assert_eq!(super::prefix("aé€", 3), "aé");
        assert_eq!(super::prefix("aé€", 5), "aé");
        assert_eq!(super::prefix("aé€", 6), "aé€");
        assert_eq!(super::prefix("aé€", 100), "aé€");
        assert_eq!(super::prefix("€", 0), "");
    }

    use super::*;

    #[test]
    fn over_long_string_is_refused_by_the_decoder() {
        let long = postcard::to_allocvec(&"abcdef").unwrap();
        assert!(postcard::from_bytes::<BoundedString<5>>(&long).is_err());
        assert_eq!(
            postcard::from_bytes::<BoundedString<6>>(&long)
                .unwrap()
                .as_str(),
            "abcdef"
        );
    }

    #[test]
    fn over_long_list_is_refused_before_allocation() {
        // A length prefix that claims 2^32 elements in a 6-byte message.
        let claim = [0xff, 0xff, 0xff, 0xff, 0x0f, 0x01];
        assert!(postcard::from_bytes::<BoundedVec<u8, 8>>(&claim).is_err());
        let ok = postcard::to_allocvec(&vec![1u8, 2, 3]).unwrap();
        assert_eq!(
            postcard::from_bytes::<BoundedVec<u8, 3>>(&ok)
                .unwrap()
                .as_slice(),
            &[1, 2, 3]
        );
        assert!(postcard::from_bytes::<BoundedVec<u8, 2>>(&ok).is_err());
    }

    #[test]
    fn constructors_enforce_the_bound() {
        assert_eq!(
            BoundedBytes::<2>::new(vec![0; 3]).unwrap_err(),
            TooLong { len: 3, max: 2 }
        );
        assert!(BoundedVec::<u8, 2>::new(vec![0; 2]).is_ok());
    }
}
