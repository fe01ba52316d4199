//! What a job is: a named function with serde arguments and output (the
//! [`Job`] trait and the [`job!`](crate::job!) macro), and the type-erased
//! entry point a node uses to run it from bytes.

use crate::job::codec::{decode, over_limit, write_to, Counter};
use crate::job::error::{ErrorKind, JobError};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Copies a value: `T::clone`, for a type that is `Clone`
/// ([`Job::output_cloner`]).
pub type Cloner<T> = fn(&T) -> T;

/// A job: a plain function with a stable name. Written with [`job!`](crate::job!).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a job: a closure or a plain function is not a job",
    label = "write this as a `job!` function",
    note = "define it with `ppclient::job! {{ pub fn name(x: u64) -> u64 {{ ... }} }}` and pass what a closure captured as arguments: a job runs in other processes, by name"
)]
pub trait Job: Copy + Send + Sync + 'static {
    /// The stable name nodes know the job by (`crate::module::function`).
    const NAME: &'static str;
    /// The argument and result types as written, so that a client and a node
    /// built from different sources can tell they disagree.
    const SIGNATURE: &'static str;
    /// The arguments, as a tuple.
    type Args: Serialize + DeserializeOwned + Send + 'static;
    /// What the job returns.
    type Output: Serialize + DeserializeOwned + Send + 'static;
    /// Runs the job on this thread. Panics are not caught here.
    fn run(args: Self::Args) -> Result<Self::Output, JobError>;

    /// How to copy a result, if its type is `Clone`: a handle read a second
    /// time gives the value again through it (else
    /// [`ErrorKind::Taken`](crate::job::error::ErrorKind::Taken)). [`job!`](crate::job!)
    /// fills it in for every `Clone` output; the default is `None`.
    fn output_cloner() -> Option<Cloner<Self::Output>> {
        None
    }

    /// Writes the arguments as they travel. [`job!`](crate::job!) writes
    /// each parameter that is a `Vec` of bytes or numbers as raw
    /// little-endian bytes (see [`Array`](crate::Array)); the default is
    /// [`encode`](crate::job::codec::encode)'s format.
    fn write_args<W: std::io::Write>(args: &Self::Args, out: W) -> Result<(), JobError> {
        write_to(out, args)
    }
    /// Reads what [`write_args`](Job::write_args) wrote.
    fn read_args(bytes: &[u8]) -> Result<Self::Args, JobError> {
        decode(bytes)
    }
    /// Writes a result as it travels (as [`write_args`](Job::write_args)).
    fn write_output<W: std::io::Write>(output: &Self::Output, out: W) -> Result<(), JobError> {
        write_to(out, output)
    }
    /// Reads what [`write_output`](Job::write_output) wrote.
    fn read_output(bytes: &[u8]) -> Result<Self::Output, JobError> {
        decode(bytes)
    }
    /// [`read_args`](Job::read_args) from a buffer it may keep:
    /// [`job!`](crate::job!) takes the buffer of a lone `Vec<u8>` or
    /// `ByteBuf` parameter over (the bytes move down over their header)
    /// instead of copying a large payload into a new one.
    fn read_args_owned(bytes: Vec<u8>) -> Result<Self::Args, JobError> {
        Self::read_args(&bytes)
    }
    /// [`read_output`](Job::read_output) from a buffer it may keep (as
    /// [`read_args_owned`](Job::read_args_owned), for an output that is a
    /// `Vec<u8>` or `ByteBuf`).
    fn read_output_owned(bytes: Vec<u8>) -> Result<Self::Output, JobError> {
        Self::read_output(&bytes)
    }
}

/// `J`'s arguments as they travel, in a buffer of `capacity` bytes to
/// start with (their size, when [`check_args`] measured it).
pub fn encode_args<J: Job>(args: &J::Args, capacity: usize) -> Result<Vec<u8>, JobError> {
    let mut out = crate::job::bigbuf::Writer::with_capacity(capacity);
    J::write_args(args, &mut out)?;
    Ok(out.into_inner())
}

/// [`check_size`](crate::job::codec::check_size) for `J`'s arguments as [`Job::write_args`] writes them.
pub fn check_args<J: Job>(args: &J::Args, limit: usize) -> Result<usize, JobError> {
    let mut counter = Counter { bytes: 0, limit };
    match J::write_args(args, &mut counter) {
        Ok(()) => Ok(counter.bytes),
        Err(_) if counter.bytes > limit => Err(over_limit(limit)),
        Err(e) => Err(e),
    }
}

/// Runs `J` with `args`, turning a panic into [`ErrorKind::Panicked`].
pub fn run_caught<J: Job>(args: J::Args) -> Result<J::Output, JobError> {
    let outer = IN_JOB.replace(true);
    let caught = catch_unwind(AssertUnwindSafe(|| J::run(args)));
    IN_JOB.set(outer);
    match caught {
        Ok(result) => result,
        Err(payload) => Err(JobError::from_panic(payload.as_ref())),
    }
}

thread_local! {
    /// Whether this thread is inside [`run_caught`] now.
    static IN_JOB: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Keeps the panics of jobs off stderr: a job's panic is its error, with the
/// message in [`JobError::message`], and the default hook's report (and
/// backtrace) would say it a second time. Installed once, in front of
/// whatever panic hook is set; panics outside jobs still reach that hook,
/// and so do jobs' panics when `RUST_BACKTRACE` is set (not `0`).
///
/// `Server::builder().build()` and `ppserver::serve` call it.
pub fn quiet_job_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let backtrace = std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0");
            if backtrace || !IN_JOB.get() {
                previous(info);
            }
        }));
    });
}

/// The type-erased runner of `J`: arguments in, result out, both as bytes.
pub fn run_erased<J: Job>(args: Vec<u8>) -> Result<Vec<u8>, JobError> {
    let args = {
        // The encoded arguments go as soon as they are decoded (or become
        // the argument): a large payload is held once, not twice, while the
        // job runs.
        J::read_args_owned(args)?
    };
    let output = run_caught::<J>(args)?;
    let mut out = crate::job::bigbuf::Writer::default();
    J::write_output(&output, &mut out)?;
    Ok(out.into_inner())
}

/// What a fallible job's function returns: a `Result` (or an alias of one)
/// whose error is turned into [`ErrorKind::Failed`] with the error's text.
///
/// [`job!`](crate::job!) uses it for return types whose path ends in
/// `Result`, and for any return type under `#[fallible]`.
pub trait Fallible {
    /// The value of a job that succeeded.
    type Ok;
    /// The value, or the error's text as a [`JobError`] of kind `Failed`.
    fn into_job_result(self) -> Result<Self::Ok, JobError>;
}

impl<T, E: std::fmt::Display> Fallible for Result<T, E> {
    type Ok = T;
    fn into_job_result(self) -> Result<T, JobError> {
        self.map_err(|e| JobError::new(ErrorKind::Failed, e.to_string()))
    }
}

/// Turns a plain function into a job: a unit struct of the same name that
/// implements [`Job`] and is registered with every [`Registry::linked`](crate::Registry::linked).
///
/// A parameter or result written as a `Vec` of a fixed-size integer or float
/// (`Vec<u8>`, `Vec<f64>`, `Vec<i64>`...) travels as raw little-endian bytes
/// in one binary, like [`Array`](crate::Array): no per-element encoding.
///
/// ```
/// ppcore::job! {
///     /// Adds two numbers.
///     pub fn add(a: u64, b: u64) -> u64 { a + b }
/// }
/// assert_eq!(add::call(2, 3), 5);
/// assert_eq!(<add as ppcore::Job>::run((2, 3)), Ok(5));
/// ```
///
/// A function whose return type is a path ending in `Result`
/// (`Result<T, E>`, `std::result::Result<T, E>`, `std::io::Result<T>`) is a
/// fallible job: its output is `T`, and an `Err` becomes
/// [`ErrorKind::Failed`] with the error's text (`E: Display`). A type alias
/// under another name is marked with `#[fallible]`, written first:
///
/// ```
/// use ppcore::{ErrorKind, Job};
/// type Parsed<T> = Result<T, std::num::ParseIntError>;
///
/// ppcore::job! {
///     /// Parses a number.
///     pub fn parse(text: String) -> std::result::Result<i64, String> {
///         text.parse().map_err(|e| format!("{text:?}: {e}"))
///     }
/// }
/// ppcore::job! {
///     #[fallible]
///     /// Parses a number too.
///     pub fn parse_alias(text: String) -> Parsed<i64> { text.parse() }
/// }
/// assert_eq!(parse::run(("7".into(),)), Ok(7));
/// assert_eq!(parse::run(("x".into(),)).unwrap_err().kind, ErrorKind::Failed);
/// assert_eq!(parse_alias::run(("8".into(),)), Ok(8));
/// assert_eq!(parse_alias::run(("y".into(),)).unwrap_err().kind, ErrorKind::Failed);
/// ```
///
/// Three forms are refused, each with a message saying what to write
/// instead. A borrowed parameter (`&str`, `&[T]`, `&T`, a lifetime): the
/// arguments travel to other processes, so take owned types:
///
/// ```compile_fail
/// ppcore::job! {
///     /// Refused: "borrows a parameter ... `String` for `&str`".
///     pub fn shout(text: &str) -> String { text.to_uppercase() }
/// }
/// ```
///
/// A generic job: it has one name and one type on every node, so write one
/// job per type:
///
/// ```compile_fail
/// ppcore::job! {
///     /// Refused: "is generic ... write one job per type instead".
///     pub fn first<T: Clone>(items: Vec<T>) -> T { items[0].clone() }
/// }
/// ```
///
/// A closure where a job is wanted (say `server.submit(|x: u64| x + 1,
/// (1,))`): the error says to write a `job!` function and pass what the
/// closure captured as arguments (see [`Job`]).
///
/// ```compile_fail
/// fn wants_a_job<J: ppcore::Job>(_: J) {}
/// let offset = 3u64;
/// wants_a_job(move |x: u64| x + offset); // "a closure is not a job"
/// ```
#[macro_export]
macro_rules! job {
    // Every form goes through the parameter check first; `@checked` is
    // the job itself.
    (@checked #[fallible] $(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?)
        -> $ret:ty $body:block) => {
        $crate::__job_item!(
            [$(#[$meta])*] $vis $name [$($arg: $ty),*] [<$ret as $crate::Fallible>::Ok] [$ret]
            [$crate::Fallible::into_job_result] $body
        );
    };
    (@checked $(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?)
        -> $($rest:tt)+) => {
        $crate::__job_ret!(@scan [[$(#[$meta])*] $vis $name [$($arg: $ty),*]] [] $($rest)+);
    };
    (@checked $(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $body:block) => {
        $crate::job!(@checked $(#[$meta])* $vis fn $name($($arg: $ty),*) -> () $body);
    };
    (#[fallible] $(#[$meta:meta])* $vis:vis fn $name:ident ($($params:tt)*) $($rest:tt)*) => {
        $crate::__job_owned!([$name] [$($params)*]
            [#[fallible] $(#[$meta])* $vis fn $name ($($params)*) $($rest)*]);
    };
    ($(#[$meta:meta])* $vis:vis fn $name:ident < $($_rest:tt)*) => {
        ::core::compile_error!(concat!(
            "job! `", stringify!($name), "` is generic: a job has one name and one type on every ",
            "node, so write one job per type instead (`fn sum_f64(v: Vec<f64>)`, `fn sum_u64(v: Vec<u64>)`)"
        ));
    };
    ($(#[$meta:meta])* $vis:vis fn $name:ident ($($params:tt)*) $($rest:tt)*) => {
        $crate::__job_owned!([$name] [$($params)*]
            [$(#[$meta])* $vis fn $name ($($params)*) $($rest)*]);
    };
}

/// Checks that a job's parameters are owned (no `&`, no lifetime), then
/// makes the job: its arguments travel to another process, so they cannot
/// borrow from the caller.
#[doc(hidden)]
#[macro_export]
macro_rules! __job_owned {
    ([$name:ident] [] [$($job:tt)*]) => {
        $crate::job!(@checked $($job)*);
    };
    ([$name:ident] [& $($_rest:tt)*] $_job:tt) => {
        $crate::__job_owned!(@borrowed $name);
    };
    ([$name:ident] [&& $($_rest:tt)*] $_job:tt) => {
        $crate::__job_owned!(@borrowed $name);
    };
    ([$name:ident] [$lt:lifetime $($_rest:tt)*] $_job:tt) => {
        $crate::__job_owned!(@borrowed $name);
    };
    ([$name:ident] [($($inner:tt)*) $($rest:tt)*] $job:tt) => {
        $crate::__job_owned!([$name] [$($inner)* $($rest)*] $job);
    };
    ([$name:ident] [[$($inner:tt)*] $($rest:tt)*] $job:tt) => {
        $crate::__job_owned!([$name] [$($inner)* $($rest)*] $job);
    };
    ([$name:ident] [$_first:tt $($rest:tt)*] $job:tt) => {
        $crate::__job_owned!([$name] [$($rest)*] $job);
    };
    (@borrowed $name:ident) => {
        ::core::compile_error!(concat!(
            "job! `", stringify!($name), "` borrows a parameter: a job's arguments travel to ",
            "other processes, so take owned types instead (`String` for `&str`, `Vec<T>` for `&[T]`, ",
            "`T` for `&T`), or share one big value among many jobs with `Server::share`"
        ));
    };
}

/// Splits a job's return type from its body, then tells a fallible job (a
/// path ending in `Result <`) from an infallible one.
#[doc(hidden)]
#[macro_export]
macro_rules! __job_ret {
    (@scan $item:tt [$($ret:tt)*] $body:tt) => {
        $crate::__job_ret!(@path $item [$($ret)*] [$($ret)*] $body);
    };
    (@scan $item:tt [$($ret:tt)*] $next:tt $($rest:tt)+) => {
        $crate::__job_ret!(@scan $item [$($ret)* $next] $($rest)+);
    };
    (@path $item:tt $ret:tt [Result < $($_x:tt)*] $body:tt) => {
        $crate::__job_ret!(@emit fallible $item $ret $body);
    };
    (@path $item:tt $ret:tt [:: $($x:tt)*] $body:tt) => {
        $crate::__job_ret!(@path $item $ret [$($x)*] $body);
    };
    (@path $item:tt $ret:tt [$_seg:ident :: $($x:tt)*] $body:tt) => {
        $crate::__job_ret!(@path $item $ret [$($x)*] $body);
    };
    (@path $item:tt $ret:tt [$($_x:tt)*] $body:tt) => {
        $crate::__job_ret!(@emit plain $item $ret $body);
    };
    (@emit fallible [[$($meta:tt)*] $vis:vis $name:ident [$($args:tt)*]] [$ret:ty] $body:block) => {
        $crate::__job_item!(
            [$($meta)*] $vis $name [$($args)*] [<$ret as $crate::Fallible>::Ok] [$ret]
            [$crate::Fallible::into_job_result] $body
        );
    };
    (@emit plain [[$($meta:tt)*] $vis:vis $name:ident [$($args:tt)*]] [$ret:ty] $body:block) => {
        $crate::__job_item!(
            [$($meta)*] $vis $name [$($args)*] [$ret] [$ret]
            [|r: $ret| ::core::result::Result::<$ret, $crate::JobError>::Ok(r)]
            $body
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __job_item {
    ([$($meta:tt)*] $vis:vis $name:ident [$($arg:ident : $ty:ty),*] [$out:ty] [$ret:ty]
     [$into:expr] $body:block) => {
        $($meta)*
        #[allow(non_camel_case_types)]
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        $vis struct $name;

        impl $name {
            /// Calls the job's function directly on this thread.
            #[allow(clippy::too_many_arguments, clippy::unused_unit)]
            $vis fn call($($arg: $ty),*) -> $ret $body
        }

        impl $crate::Job for $name {
            const NAME: &'static str = concat!(module_path!(), "::", stringify!($name));
            const SIGNATURE: &'static str =
                concat!("(", stringify!($($ty),*), ") -> ", stringify!($ret));
            type Args = ($($ty,)*);
            type Output = $out;
            #[allow(clippy::unused_unit)]
            fn run(args: Self::Args) -> ::core::result::Result<$out, $crate::JobError> {
                let ($($arg,)*) = args;
                ($into)($name::call($($arg),*))
            }

            fn output_cloner() -> ::core::option::Option<$crate::Cloner<$out>> {
                #[allow(unused_imports)]
                use $crate::__clone::{ViaClone as _, ViaNone as _};
                (&$crate::__clone::Probe::<$out>::new()).cloner()
            }

            $crate::__job_codec!([$($arg: $ty),*] [$out]);
        }

        $crate::inventory::submit! { $crate::JobEntry::of::<$name>() }
    };
}

/// Whether a type is `Clone`, asked where the type is known (in
/// [`job!`](crate::job!)'s expansion): `(&Probe::<T>::new()).cloner()` finds
/// [`ViaClone`](__clone::ViaClone) when `T: Clone` (the method on `Probe` itself comes first)
/// and [`ViaNone`](__clone::ViaNone) otherwise.
#[doc(hidden)]
pub mod __clone {
    use std::marker::PhantomData;

    /// Stands for a value of type `T`.
    pub struct Probe<T>(PhantomData<fn() -> T>);

    impl<T> Probe<T> {
        /// The probe.
        #[allow(clippy::new_without_default)]
        pub fn new() -> Self {
            Probe(PhantomData)
        }
    }

    /// `T` is `Clone`: its `clone`.
    pub trait ViaClone<T> {
        /// `Some(clone)`.
        fn cloner(&self) -> Option<fn(&T) -> T>;
    }

    impl<T: Clone> ViaClone<T> for Probe<T> {
        fn cloner(&self) -> Option<fn(&T) -> T> {
            Some(T::clone)
        }
    }

    /// `T` is not `Clone`.
    pub trait ViaNone<T> {
        /// `None`.
        fn cloner(&self) -> Option<fn(&T) -> T>;
    }

    impl<T> ViaNone<T> for &Probe<T> {
        fn cloner(&self) -> Option<fn(&T) -> T> {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::job::definition::Job;
    use crate::job::error::{ErrorKind, JobError};

    type Alias<T> = Result<T, String>;

    /// A result type that is not `Clone`.
    #[derive(serde::Serialize, serde::Deserialize)]
    struct Unique(u8);

    crate::job! {
        /// Its output cannot be copied.
        fn unique(n: u8) -> Unique { Unique(n) }
    }

    #[test]
    fn job_outputs_that_are_clone_get_a_cloner_and_others_none() {
        let copy = <plain_result as Job>::output_cloner().expect("u8 is Clone");
        assert_eq!(copy(&7), 7);
        assert!(<unique as Job>::output_cloner().is_none());
        assert_eq!(unique::call(3).0, 3);
    }

    crate::job! {
        /// Fallible, spelled out.
        fn plain_result(ok: bool) -> Result<u8, String> { if ok { Ok(1) } else { Err("no".into()) } }
    }
    crate::job! {
        /// Fallible, by its full path.
        fn full_path(ok: bool) -> ::std::result::Result<u8, String> {
            if ok { Ok(2) } else { Err("no".into()) }
        }
    }
    crate::job! {
        /// Fallible, a one-parameter alias whose name ends in `Result`.
        fn io_result(ok: bool) -> std::io::Result<u8> {
            if ok { Ok(3) } else { Err(std::io::Error::other("disk")) }
        }
    }
    crate::job! {
        #[fallible]
        /// Fallible, an alias under another name.
        fn aliased(ok: bool) -> Alias<u8> { if ok { Ok(4) } else { Err("no".into()) } }
    }
    crate::job! {
        /// Not fallible: the `Result`s are the value.
        fn results_inside(n: u8) -> Vec<Result<u8, String>> { vec![Ok(n), Err("e".into())] }
    }
    crate::job! {
        /// Not fallible either.
        fn option_of_result(n: u8) -> Option<Result<u8, String>> { Some(Ok(n)) }
    }

    fn failed<T: std::fmt::Debug>(r: Result<T, JobError>) -> (ErrorKind, String) {
        let e = r.unwrap_err();
        (e.kind, e.message)
    }

    #[test]
    fn result_paths_are_fallible() {
        assert_eq!(plain_result::run((true,)), Ok(1));
        assert_eq!(full_path::run((true,)), Ok(2));
        assert_eq!(io_result::run((true,)), Ok(3));
        assert_eq!(aliased::run((true,)), Ok(4));
        let no = (ErrorKind::Failed, "no".to_owned());
        assert_eq!(failed(plain_result::run((false,))), no);
        assert_eq!(failed(full_path::run((false,))), no);
        assert_eq!(failed(aliased::run((false,))), no);
        assert_eq!(
            failed(io_result::run((false,))),
            (ErrorKind::Failed, "disk".to_owned())
        );
    }

    #[test]
    fn results_inside_other_types_are_values() {
        assert_eq!(
            results_inside::run((5,)),
            Ok(vec![Ok(5), Err("e".to_owned())])
        );
        assert_eq!(option_of_result::run((6,)), Ok(Some(Ok(6))));
        assert!(
            aliased::SIGNATURE.ends_with("-> Alias<u8>"),
            "{}",
            aliased::SIGNATURE
        );
    }
}
