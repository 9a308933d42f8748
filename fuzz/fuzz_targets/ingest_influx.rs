//! Arbitrary bytes into the Influx line-protocol parser (see ingest_common.rs for the properties).

#![no_main]

#[path = "ingest_common.rs"]
mod ingest_common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ingest_common::check(tsq_formats::Format::Influx, data));
