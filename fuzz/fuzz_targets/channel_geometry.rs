//! See shmcast::fuzzing::channel_geometry.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| shmcast::fuzzing::channel_geometry(data));
