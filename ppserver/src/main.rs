//! `ppserver`: the node daemon.
fn main() {}
