//! The fast path for plain vectors of bytes and numbers in [`job!`](crate::job!)
//! jobs: a parameter or result written as `Vec<u8>`, `Vec<f64>`, `Vec<i64>`
//! (any `Vec<T>` of an [`Element`]) travels as one MessagePack binary of
//! little-endian raw bytes, exactly as [`Array`](crate::Array) does, instead
//! of one MessagePack number per element. Every other type goes through serde
//! as before.
//!
//! How: `job!` knows each parameter's type as written, and picks the codec of
//! each one by "autoref specialisation": `(&&Tag::<T>::new()).codec_*()`
//! finds [`ViaRaw`] when `T` is `Vec<E: Element>`, [`ViaBytes`] when it is
//! `ByteBuf` (the same binary, read into a buffer fit for a large payload),
//! and falls back to [`ViaSerde`] otherwise. The client and the node run the same generated
//! code for the same job, so both sides agree on the wire. Decoding a raw
//! field still accepts a list of numbers (what a plain serde encoder writes).
//!
//! This module is the macro's business (hidden from the docs); its items are
//! public only so that the macro's expansion in other crates can name them.

use crate::job::array::{Array, Element};
use crate::job::error::{ErrorKind, JobError};
use serde::de::{DeserializeOwned, DeserializeSeed, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use serde_bytes::ByteBuf;
use std::marker::PhantomData;

/// A type, as a value: the receiver the codec is picked by.
pub struct Tag<T>(PhantomData<T>);

impl<T> Tag<T> {
    /// The tag of `T`.
    #[allow(clippy::new_without_default)]
    pub const fn new() -> Self {
        Tag(PhantomData)
    }
}

/// The fast codec: `Vec<E>` as raw little-endian bytes in one binary.
pub trait ViaRaw {
    /// The element type.
    type Elem: Element;
    /// `value` ready to serialise as one binary.
    fn codec_ser<'a>(&self, value: &'a Vec<Self::Elem>) -> RawRef<'a, Self::Elem> {
        RawRef(value)
    }
    /// The seed that reads it back (or a list of numbers).
    fn codec_de(&self) -> RawSeed<Self::Elem> {
        RawSeed(PhantomData)
    }
    /// A `Vec<u8>` taken over from `bytes` when they are exactly one
    /// binary after `header` bytes; other element types (whose bytes
    /// would need aligning) and other shapes are given back.
    fn codec_take(
        &self,
        bytes: Vec<u8>,
        header: fn(&[u8]) -> Option<usize>,
    ) -> Result<Vec<Self::Elem>, Vec<u8>> {
        let Some(skip) = header(&bytes) else {
            return Err(bytes);
        };
        let mut slot = Some(bytes);
        let same = (&mut slot as &mut dyn std::any::Any).downcast_mut::<Option<Vec<Self::Elem>>>();
        if let Some(mut v) = same.and_then(Option::take) {
            v.drain(..skip);
            return Ok(v);
        }
        Err(slot.unwrap_or_default())
    }
}

impl<E: Element> ViaRaw for &Tag<Vec<E>> {
    type Elem = E;
}

/// The general codec: the type's own serde implementation.
pub trait ViaSerde {
    /// The type.
    type Item: Serialize + DeserializeOwned;
    /// `value` as it is.
    fn codec_ser<'a>(&self, value: &'a Self::Item) -> &'a Self::Item {
        value
    }
    /// The seed that reads it back.
    fn codec_de(&self) -> PhantomData<Self::Item> {
        PhantomData
    }
    /// Nothing to take over: `bytes` are given back.
    fn codec_take(
        &self,
        bytes: Vec<u8>,
        _header: fn(&[u8]) -> Option<usize>,
    ) -> Result<Self::Item, Vec<u8>> {
        Err(bytes)
    }
}

impl<T: Serialize + DeserializeOwned> ViaSerde for Tag<T> {
    type Item = T;
}

/// The codec of [`ByteBuf`]: the same binary on the wire as its own serde
/// implementation writes, read into a buffer that asks for huge pages when
/// it is large (`crate::bigbuf`).
pub trait ViaBytes {
    /// `value` as it is.
    fn codec_ser<'a>(&self, value: &'a ByteBuf) -> &'a ByteBuf {
        value
    }
    /// The seed that reads it back.
    fn codec_de(&self) -> BytesSeed {
        BytesSeed
    }
    /// `bytes` taken over when they are exactly one binary after `header`
    /// bytes; given back otherwise.
    fn codec_take(
        &self,
        mut bytes: Vec<u8>,
        header: fn(&[u8]) -> Option<usize>,
    ) -> Result<ByteBuf, Vec<u8>> {
        let Some(skip) = header(&bytes) else {
            return Err(bytes);
        };
        bytes.drain(..skip);
        Ok(ByteBuf::from(bytes))
    }
}

impl ViaBytes for &Tag<ByteBuf> {}

/// Reads a [`ByteBuf`] as `serde_bytes` does (a binary, a string or a list
/// of bytes).
pub struct BytesSeed;

impl<'de> DeserializeSeed<'de> for BytesSeed {
    type Value = ByteBuf;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<ByteBuf, D::Error> {
        deserializer.deserialize_byte_buf(BytesVisitor)
    }
}

struct BytesVisitor;

impl<'de> Visitor<'de> for BytesVisitor {
    type Value = ByteBuf;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a byte array")
    }

    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<ByteBuf, E> {
        let mut out = crate::job::bigbuf::with_capacity(v.len());
        out.extend_from_slice(v);
        Ok(ByteBuf::from(out))
    }

    fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<ByteBuf, E> {
        Ok(ByteBuf::from(v))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ByteBuf, E> {
        self.visit_bytes(v.as_bytes())
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<ByteBuf, E> {
        Ok(ByteBuf::from(v.into_bytes()))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<ByteBuf, A::Error> {
        // The hint comes from the input: trust it only as far as 4 KiB.
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(b) = seq.next_element::<u8>()? {
            out.push(b);
        }
        Ok(ByteBuf::from(out))
    }
}

/// A borrowed vector that serialises as one binary of raw little-endian
/// bytes (the representation of [`Array`]).
pub struct RawRef<'a, E: Element>(&'a Vec<E>);

impl<E: Element> Serialize for RawRef<'_, E> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_seq(self.0.iter())
        } else {
            serializer.serialize_bytes(&<E as crate::job::array::sealed::Raw>::le_bytes(self.0))
        }
    }
}

/// Reads what [`RawRef`] wrote (or a list of numbers) as a `Vec<E>`.
pub struct RawSeed<E>(PhantomData<E>);

impl<'de, E: Element> DeserializeSeed<'de> for RawSeed<E> {
    type Value = Vec<E>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Vec<E>, D::Error> {
        Array::<E>::deserialize(deserializer).map(Array::into_vec)
    }
}

/// Writes `value` with the codec's settings (the one place they live).
pub fn write<W: std::io::Write, T: Serialize + ?Sized>(out: W, value: &T) -> Result<(), JobError> {
    crate::job::codec::write_to(out, value)
}

/// Reads a whole value through `seed`, with [`decode`](crate::job::codec::decode)'s
/// second try for serde's buffering types.
pub fn read_seed<T, S>(bytes: &[u8], seed: impl Fn() -> S) -> Result<T, JobError>
where
    S: for<'de> DeserializeSeed<'de, Value = T>,
{
    let once = |input: &[u8]| {
        let mut de = rmp_serde::Deserializer::from_read_ref(input);
        seed().deserialize(&mut de)
    };
    let first = match once(bytes) {
        Ok(value) => return Ok(value),
        Err(e) => JobError::new(ErrorKind::Codec, e.to_string()),
    };
    match crate::job::binaries_as_arrays::bins_as_arrays(bytes) {
        Some(rewritten) => {
            crate::job::binaries_as_arrays::as_second_try(|| once(&rewritten)).map_err(|_| first)
        }
        None => Err(first),
    }
}

/// Reads a tuple of `len` fields through `visitor` (the macro's, which reads
/// each field through its codec's seed).
pub fn read_tuple<T, V>(bytes: &[u8], len: usize, visitor: impl Fn() -> V) -> Result<T, JobError>
where
    V: for<'de> Visitor<'de, Value = T>,
{
    read_seed(bytes, || TupleSeed {
        len,
        visitor: visitor(),
    })
}

struct TupleSeed<V> {
    len: usize,
    visitor: V,
}

impl<'de, V: Visitor<'de>> DeserializeSeed<'de> for TupleSeed<V> {
    type Value = V::Value;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<V::Value, D::Error> {
        deserializer.deserialize_tuple(self.len, self.visitor)
    }
}

/// The length of the MessagePack binary header `bytes` start with, when the
/// rest of `bytes` is exactly that binary.
pub fn bin_header(bytes: &[u8]) -> Option<usize> {
    let be = |at: std::ops::Range<usize>| {
        bytes
            .get(at)
            .map(|b| b.iter().fold(0usize, |n, &x| (n << 8) | usize::from(x)))
    };
    let (header, len): (usize, usize) = match *bytes.first()? {
        0xc4 => (2, be(1..2)?),
        0xc5 => (3, be(1..3)?),
        0xc6 => (5, be(1..5)?),
        _ => return None,
    };
    (header.checked_add(len)? == bytes.len()).then_some(header)
}

/// [`bin_header`] inside a tuple of one field (a job's lone argument).
pub fn lone_bin_header(bytes: &[u8]) -> Option<usize> {
    match bytes.split_first()? {
        (0x91, rest) => bin_header(rest).map(|h| h + 1),
        _ => None,
    }
}

/// The error of a tuple with fewer fields than the job takes.
pub fn missing<E: serde::de::Error>(at: usize, expected: &dyn serde::de::Expected) -> E {
    E::invalid_length(at, expected)
}

/// Implements [`Job`](crate::job::definition::Job)'s codec methods for `job!`: the fast
/// codec for each parameter and the output that is a `Vec` of numbers.
#[doc(hidden)]
#[macro_export]
macro_rules! __job_codec {
    ([] [$out:ty]) => {
        $crate::__job_codec!(@output [$out]);
    };
    ([$($arg:ident : $ty:ty),+] [$out:ty]) => {
        fn write_args<W: ::std::io::Write>(
            args: &Self::Args,
            out: W,
        ) -> ::core::result::Result<(), $crate::JobError> {
            #[allow(unused_imports)]
            use $crate::__fast::{ViaBytes as _, ViaRaw as _, ViaSerde as _};
            let ($($arg,)+) = args;
            $crate::__fast::write(
                out,
                &($((&&$crate::__fast::Tag::<$ty>::new()).codec_ser($arg),)+),
            )
        }

        fn read_args(bytes: &[u8]) -> ::core::result::Result<Self::Args, $crate::JobError> {
            struct Fields;
            impl<'de> $crate::serde::de::Visitor<'de> for Fields {
                type Value = ($($ty,)+);
                fn expecting(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                    f.write_str(concat!("the arguments (", stringify!($($ty),+), ")"))
                }
                #[allow(unused_assignments)]
                fn visit_seq<A: $crate::serde::de::SeqAccess<'de>>(
                    self,
                    mut seq: A,
                ) -> ::core::result::Result<Self::Value, A::Error> {
                    #[allow(unused_imports)]
                    use $crate::__fast::{ViaBytes as _, ViaRaw as _, ViaSerde as _};
                    let mut at = 0usize;
                    Ok(($({
                        let field = seq
                            .next_element_seed((&&$crate::__fast::Tag::<$ty>::new()).codec_de())?
                            .ok_or_else(|| $crate::__fast::missing(at, &self))?;
                        at += 1;
                        field
                    },)+))
                }
            }
            $crate::__fast::read_tuple(bytes, [$(stringify!($arg)),+].len(), || Fields)
        }

        fn read_args_owned(bytes: ::std::vec::Vec<u8>) -> ::core::result::Result<Self::Args, $crate::JobError> {
            $crate::__job_codec!(@take_args bytes [$($ty),+])
        }

        $crate::__job_codec!(@output [$out]);
    };
    (@take_args $bytes:ident [$ty:ty]) => {{
        #[allow(unused_imports)]
        use $crate::__fast::{ViaBytes as _, ViaRaw as _, ViaSerde as _};
        match (&&$crate::__fast::Tag::<$ty>::new()).codec_take($bytes, $crate::__fast::lone_bin_header) {
            ::core::result::Result::Ok(arg) => ::core::result::Result::Ok((arg,)),
            ::core::result::Result::Err(bytes) => Self::read_args(&bytes),
        }
    }};
    (@take_args $bytes:ident [$($ty:ty),+]) => {
        Self::read_args(&$bytes)
    };
    (@output [$out:ty]) => {
        fn write_output<W: ::std::io::Write>(
            output: &Self::Output,
            out: W,
        ) -> ::core::result::Result<(), $crate::JobError> {
            #[allow(unused_imports)]
            use $crate::__fast::{ViaBytes as _, ViaRaw as _, ViaSerde as _};
            $crate::__fast::write(out, &(&&$crate::__fast::Tag::<$out>::new()).codec_ser(output))
        }

        fn read_output(bytes: &[u8]) -> ::core::result::Result<Self::Output, $crate::JobError> {
            #[allow(unused_imports)]
            use $crate::__fast::{ViaBytes as _, ViaRaw as _, ViaSerde as _};
            $crate::__fast::read_seed(bytes, || (&&$crate::__fast::Tag::<$out>::new()).codec_de())
        }

        fn read_output_owned(bytes: ::std::vec::Vec<u8>) -> ::core::result::Result<Self::Output, $crate::JobError> {
            #[allow(unused_imports)]
            use $crate::__fast::{ViaBytes as _, ViaRaw as _, ViaSerde as _};
            match (&&$crate::__fast::Tag::<$out>::new()).codec_take(bytes, $crate::__fast::bin_header) {
                ::core::result::Result::Ok(output) => ::core::result::Result::Ok(output),
                ::core::result::Result::Err(bytes) => Self::read_output(&bytes),
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use crate::job::definition::Job;
    use crate::job::error::ErrorKind;

    crate::job! {
        /// Every kind of field at once.
        fn mixed(bytes: Vec<u8>, xs: Vec<f64>, name: String, ids: Vec<i64>, words: Vec<String>) -> Vec<f32> {
            let n = bytes.len() + xs.len() + name.len() + ids.len() + words.len();
            vec![n as f32; 2]
        }
    }
    crate::job! {
        /// No arguments.
        fn nothing() -> Vec<u8> { vec![7; 3] }
    }
    crate::job! {
        /// Fallible, with a raw output.
        fn maybe(ok: bool) -> Result<Vec<u16>, String> { if ok { Ok(vec![1, 2]) } else { Err("no".into()) } }
    }

    crate::job! {
        /// Byte buffers in and out.
        fn bufs(a: serde_bytes::ByteBuf, n: u8) -> serde_bytes::ByteBuf {
            let mut v = a.into_vec();
            v.push(n);
            serde_bytes::ByteBuf::from(v)
        }
    }

    crate::job! {
        /// A lone byte vector in and out.
        fn flip(bytes: Vec<u8>) -> Vec<u8> { bytes.into_iter().rev().collect() }
    }

    fn args() -> <mixed as Job>::Args {
        (
            vec![0xFF; 1000],
            vec![1.5, -0.0, f64::NAN, 3e300],
            "x".into(),
            vec![-1, i64::MAX],
            vec!["a".into()],
        )
    }

    fn written<J: Job>(args: &J::Args) -> Vec<u8> {
        let mut out = Vec::new();
        J::write_args(args, &mut out).unwrap();
        out
    }

    #[test]
    fn numeric_vectors_travel_as_raw_bytes_and_come_back_exact() {
        let bytes = written::<mixed>(&args());
        // 1000 bytes + 32 + 16 raw, plus a few headers: no tag per element.
        assert!(bytes.len() < 1000 + 32 + 16 + 40, "{} bytes", bytes.len());
        let (b, xs, name, ids, words) = mixed::read_args(&bytes).unwrap();
        let want = args();
        assert_eq!(
            (&b, &name, &ids, &words),
            (&want.0, &want.2, &want.3, &want.4)
        );
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&xs), bits(&want.1));
    }

    #[test]
    fn raw_fields_still_read_lists_of_numbers_from_plain_serde() {
        let plain = rmp_serde::to_vec(&args()).unwrap();
        let back = mixed::read_args(&plain).unwrap();
        assert_eq!(back.3, vec![-1, i64::MAX]);
        assert_eq!(back.0.len(), 1000);
    }

    #[test]
    fn outputs_and_empty_argument_lists_use_the_same_codec() {
        let mut out = Vec::new();
        <nothing as Job>::write_args(&(), &mut out).unwrap();
        <nothing as Job>::read_args(&out).unwrap();
        let mut out = Vec::new();
        <maybe as Job>::write_output(&vec![1, 2], &mut out).unwrap();
        assert_eq!(out.len(), 2 + 4, "bin8 header and two raw u16");
        assert_eq!(<maybe as Job>::read_output(&out).unwrap(), vec![1, 2]);
        let bytes =
            crate::job::definition::run_erased::<maybe>(written::<maybe>(&(true,))).unwrap();
        assert_eq!(<maybe as Job>::read_output(&bytes).unwrap(), vec![1, 2]);
        let bytes = crate::job::definition::run_erased::<mixed>(written::<mixed>(&args())).unwrap();
        assert_eq!(
            <mixed as Job>::read_output(&bytes).unwrap(),
            vec![1008.0; 2]
        );
    }

    #[test]
    fn byte_buffers_travel_as_serde_bytes_writes_them_and_read_every_form_it_reads() {
        use serde_bytes::ByteBuf;
        // Large enough for the buffer that asks for huge pages.
        let big = ByteBuf::from(
            (0..(5usize << 20))
                .map(|i| (i % 253) as u8)
                .collect::<Vec<_>>(),
        );
        let ours = written::<bufs>(&(big.clone(), 9));
        assert_eq!(ours, rmp_serde::to_vec(&(&big, 9u8)).unwrap(), "same wire");
        let out = crate::job::definition::run_erased::<bufs>(ours).unwrap();
        let back = <bufs as Job>::read_output(&out).unwrap();
        assert_eq!(back.len(), big.len() + 1);
        assert_eq!((&back[..big.len()], back.last()), (&big[..], Some(&9)));
        // A list of bytes and a string, as serde_bytes also accepts.
        let list = rmp_serde::to_vec(&(vec![1u8, 2, 3], 4u8)).unwrap();
        assert_eq!(bufs::read_args(&list).unwrap().0.into_vec(), vec![1, 2, 3]);
        let text = rmp_serde::to_vec(&("hi", 4u8)).unwrap();
        assert_eq!(bufs::read_args(&text).unwrap().0.into_vec(), b"hi".to_vec());
    }

    #[test]
    fn a_lone_byte_argument_and_a_byte_output_are_taken_over_exact() {
        use serde_bytes::ByteBuf;
        for n in [0usize, 1, 255, 256, 65_535, 65_536, 300_000] {
            let v: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
            let wire = written::<flip>(&(v.clone(),));
            assert_eq!(flip::read_args_owned(wire.clone()).unwrap().0, v, "{n}");
            assert_eq!(flip::read_args(&wire).unwrap().0, v);
            let mut out = Vec::new();
            <flip as Job>::write_output(&v, &mut out).unwrap();
            assert_eq!(<flip as Job>::read_output_owned(out).unwrap(), v);
            let buf = ByteBuf::from(v.clone());
            let wire = rmp_serde::to_vec(&(&buf, 7u8)).unwrap();
            assert_eq!(bufs::read_args_owned(wire).unwrap(), (buf.clone(), 7));
            let out = rmp_serde::to_vec(&buf).unwrap();
            assert_eq!(<bufs as Job>::read_output_owned(out).unwrap(), buf);
        }
        // Other shapes still decode: a plain serde list, numbers (never
        // taken over: their bytes would need aligning), several fields.
        let plain = rmp_serde::to_vec(&(vec![1u8, 2, 3],)).unwrap();
        assert_eq!(flip::read_args_owned(plain).unwrap().0, vec![1, 2, 3]);
        let mut out = Vec::new();
        <maybe as Job>::write_output(&vec![1, 2], &mut out).unwrap();
        assert_eq!(<maybe as Job>::read_output_owned(out).unwrap(), vec![1, 2]);
        let wire = written::<mixed>(&args());
        assert_eq!(mixed::read_args_owned(wire).unwrap().0, args().0);
        // A binary whose header says more or fewer bytes than follow is not
        // taken over: it reads as the borrowing decoder reads it (a cut one
        // is a codec error).
        let mut long = written::<flip>(&(vec![9u8; 300],));
        long.push(0);
        let borrowed = flip::read_args(&long).map(|a| a.0);
        assert_eq!(flip::read_args_owned(long).map(|a| a.0), borrowed);
        let mut short = written::<flip>(&(vec![9u8; 300],));
        short.pop();
        assert_eq!(
            flip::read_args_owned(short).unwrap_err().kind,
            ErrorKind::Codec
        );
    }

    #[test]
    fn binary_headers_are_read_only_when_the_rest_is_exactly_the_binary() {
        use super::{bin_header, lone_bin_header};
        assert_eq!(bin_header(&[0xc4, 2, 7, 7]), Some(2));
        assert_eq!(bin_header(&[0xc5, 0, 1, 7]), Some(3));
        assert_eq!(bin_header(&[0xc6, 0, 0, 0, 0]), Some(5));
        assert_eq!(bin_header(&[0xc4, 3, 7, 7]), None, "one byte short");
        assert_eq!(bin_header(&[0xc4, 1, 7, 7]), None, "one byte over");
        assert_eq!(bin_header(&[0xc6, 0, 0]), None, "cut header");
        assert_eq!(bin_header(&[0x92, 1, 2]), None, "not a binary");
        assert_eq!(bin_header(&[]), None);
        assert_eq!(lone_bin_header(&[0x91, 0xc4, 1, 7]), Some(3));
        assert_eq!(lone_bin_header(&[0x92, 0xc4, 1, 7]), None);
    }

    #[test]
    fn too_few_or_wrong_fields_are_codec_errors() {
        let short = rmp_serde::to_vec(&(vec![1u8],)).unwrap();
        assert_eq!(mixed::read_args(&short).unwrap_err().kind, ErrorKind::Codec);
        let odd = rmp_serde::to_vec(&(serde_bytes::ByteBuf::from(vec![1u8; 3]),)).unwrap();
        assert_eq!(
            <maybe as Job>::read_output(&odd).unwrap_err().kind,
            ErrorKind::Codec
        );
    }
}
