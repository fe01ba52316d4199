//! Numeric vectors at wire speed: [`Array<T>`] travels as one MessagePack
//! binary holding its elements as little-endian raw bytes, not as one
//! MessagePack number per element.
//!
//! Encoding views the elements as bytes (no copy on little-endian machines)
//! and writes them once into the output; decoding copies the binary once
//! into a fresh, aligned `Vec<T>`. So a `Vec<f64>` of 8 MiB costs two
//! `memcpy`s of 8 MiB, against a tag and a conversion per element for a
//! plain `Vec<f64>`.

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};

pub(crate) mod sealed {
    use std::borrow::Cow;

    /// How an element type turns into little-endian bytes and back.
    pub trait Raw: Copy + Default + Sized {
        /// Bytes per element.
        const SIZE: usize;
        /// The elements as little-endian bytes: borrowed where the machine is
        /// little-endian, converted otherwise.
        fn le_bytes(items: &[Self]) -> Cow<'_, [u8]>;
        /// Fills `out` from `bytes`, which holds exactly `out.len()` elements.
        fn fill_from_le(bytes: &[u8], out: &mut [Self]);
    }
}

/// An element type of an [`Array`]: the fixed-size integers and the floats.
/// (The trait is sealed: its methods are the array's business.)
pub trait Element:
    sealed::Raw + Serialize + for<'de> Deserialize<'de> + fmt::Debug + PartialEq + Send + Sync + 'static
{
}

macro_rules! elements {
    ($($t:ty),*) => {$(
        impl sealed::Raw for $t {
            const SIZE: usize = std::mem::size_of::<$t>();

            fn le_bytes(items: &[Self]) -> std::borrow::Cow<'_, [u8]> {
                #[cfg(target_endian = "little")]
                {
                    std::borrow::Cow::Borrowed(zerocopy::IntoBytes::as_bytes(items))
                }
                #[cfg(not(target_endian = "little"))]
                {
                    std::borrow::Cow::Owned(items.iter().flat_map(|x| x.to_le_bytes()).collect())
                }
            }

            fn fill_from_le(bytes: &[u8], out: &mut [Self]) {
                #[cfg(target_endian = "little")]
                {
                    zerocopy::IntoBytes::as_mut_bytes(out).copy_from_slice(bytes);
                }
                #[cfg(not(target_endian = "little"))]
                {
                    for (x, chunk) in out.iter_mut().zip(bytes.chunks_exact(Self::SIZE)) {
                        let mut le = [0u8; std::mem::size_of::<$t>()];
                        le.copy_from_slice(chunk);
                        *x = <$t>::from_le_bytes(le);
                    }
                }
            }
        }

        impl Element for $t {}
    )*};
}

elements!(u8, i8, u16, i16, u32, i32, u64, i64, u128, i128, f32, f64);

/// A vector of numbers that travels as raw little-endian bytes in one
/// MessagePack binary: the fast way to send `Vec<f64>`, `Vec<f32>`,
/// `Vec<i64>` and the like as job arguments and results.
///
/// It is a `Vec<T>` in all but name (it derefs to one); wrap with
/// `Array::from(vec)` and unwrap with `.0` or `Vec::from(array)`, neither of
/// which copies. Floats keep their exact bits (NaN payloads included).
///
/// ```
/// use ppcore::Array;
///
/// ppcore::job! {
///     /// Scales every sample.
///     pub fn scale(samples: Array<f64>, by: f64) -> Array<f64> {
///         samples.iter().map(|x| x * by).collect()
///     }
/// }
/// let samples = Array::from(vec![1.0, 2.5, -4.0]);
/// let bytes = ppcore::encode(&(samples.clone(), 2.0))?;
/// assert!(bytes.len() < 3 * 8 + 16);                   // 8 bytes per f64, a few of framing
/// let (back, by): (Array<f64>, f64) = ppcore::decode(&bytes)?;
/// assert_eq!((back, by), (samples, 2.0));
/// assert_eq!(scale::call(Array::from(vec![1.0]), 3.0).0, vec![3.0]);
/// # Ok::<(), ppcore::JobError>(())
/// ```
///
/// In a human-readable format (JSON, say) it is a plain list of numbers.
#[derive(Clone, Default, PartialEq, PartialOrd)]
pub struct Array<T: Element>(pub Vec<T>);

impl<T: Element> Array<T> {
    /// An empty array.
    pub fn new() -> Self {
        Array(Vec::new())
    }

    /// The elements, without copying.
    pub fn into_vec(self) -> Vec<T> {
        self.0
    }
}

impl<T: Element> fmt::Debug for Array<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Array").field(&self.0).finish()
    }
}

impl<T: Element> From<Vec<T>> for Array<T> {
    fn from(items: Vec<T>) -> Self {
        Array(items)
    }
}

impl<T: Element> From<&[T]> for Array<T> {
    fn from(items: &[T]) -> Self {
        Array(items.to_vec())
    }
}

impl<T: Element> From<Array<T>> for Vec<T> {
    fn from(array: Array<T>) -> Self {
        array.0
    }
}

impl<T: Element> FromIterator<T> for Array<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        Array(iter.into_iter().collect())
    }
}

impl<T: Element> IntoIterator for Array<T> {
    type Item = T;
    type IntoIter = std::vec::IntoIter<T>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<T: Element> Deref for Array<T> {
    type Target = Vec<T>;
    fn deref(&self) -> &Vec<T> {
        &self.0
    }
}

impl<T: Element> DerefMut for Array<T> {
    fn deref_mut(&mut self) -> &mut Vec<T> {
        &mut self.0
    }
}

impl<T: Element> AsRef<[T]> for Array<T> {
    fn as_ref(&self) -> &[T] {
        &self.0
    }
}

impl<T: Element> Serialize for Array<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_seq(self.0.iter())
        } else {
            serializer.serialize_bytes(&T::le_bytes(&self.0))
        }
    }
}

impl<'de, T: Element> Deserialize<'de> for Array<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let visitor = ArrayVisitor(PhantomData);
        if deserializer.is_human_readable() {
            deserializer.deserialize_seq(visitor)
        } else {
            deserializer.deserialize_bytes(visitor)
        }
    }
}

struct ArrayVisitor<T>(PhantomData<T>);

impl<'de, T: Element> Visitor<'de> for ArrayVisitor<T> {
    type Value = Array<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a binary of {}-byte little-endian numbers, or a list of numbers",
            T::SIZE
        )
    }

    fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<Self::Value, E> {
        if !bytes.len().is_multiple_of(T::SIZE) {
            return Err(E::invalid_length(bytes.len(), &self));
        }
        let n = bytes.len() / T::SIZE;
        let mut out = crate::job::bigbuf::with_capacity(n);
        out.resize(n, T::default());
        T::fill_from_le(bytes, &mut out);
        Ok(Array(out))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        // The hint comes from the input: trust it only as far as 1 MiB.
        let hint = seq.size_hint().unwrap_or(0).min(1 << 20);
        if crate::job::binaries_as_arrays::in_second_try() {
            // Our binary, rewritten as numbers by `decode`'s second try.
            let mut bytes = Vec::with_capacity(hint);
            while let Some(b) = seq.next_element::<u8>()? {
                bytes.push(b);
            }
            return self.visit_bytes(&bytes);
        }
        let hint = hint / T::SIZE;
        let mut out = Vec::with_capacity(hint);
        while let Some(x) = seq.next_element()? {
            out.push(x);
        }
        Ok(Array(out))
    }
}
