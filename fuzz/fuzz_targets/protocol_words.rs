//! See shmcast::fuzzing::protocol_words.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| shmcast::fuzzing::protocol_words(data));
