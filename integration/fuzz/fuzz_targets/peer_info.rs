#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    mesh_fuzz::proto_checks::fuzz_peer_info(data);
    mesh_fuzz::proto_checks::fuzz_peer_info_emit(data);
});
