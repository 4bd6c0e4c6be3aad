#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    mesh_fuzz::dns_checks::fuzz_dns_gossip(data);
});
