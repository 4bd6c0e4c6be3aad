#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    mesh_fuzz::decap_checks::fuzz_decapsulate(data);
});
