//! See shmcast::fuzzing::segment_header.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| shmcast::fuzzing::segment_header(data));
