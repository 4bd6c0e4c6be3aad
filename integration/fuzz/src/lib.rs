//! mesh fuzz targets' shared bodies. See `README.md` beside `Cargo.toml`.
//!
//! Each parser's properties live in one function, used by the fuzz target of the same name
//! in `fuzz_targets/` and, without a fuzzer, by the workspace's tests, which include these
//! files by path: `router/proto/tests/fuzz_corpus.rs` ([`proto_checks`]) and
//! `router/core/tests/decap_garbage.rs` ([`decap_checks`]), `router/core/tests/handshake_garbage.rs`
//! ([`handshake_checks`]), `dns/core/tests/fuzz_corpus.rs`
//! ([`dns_checks`]).
#![forbid(unsafe_code)]

pub mod decap_checks;
pub mod dns_checks;
pub mod handshake_checks;
pub mod proto_checks;
