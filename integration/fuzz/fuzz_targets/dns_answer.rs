#![no_main]

use std::sync::OnceLock;

static SERVER: OnceLock<mesh_dns::Server> = OnceLock::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let server = SERVER.get_or_init(mesh_fuzz::dns_checks::dns_server);
    mesh_fuzz::dns_checks::fuzz_answer(server, data);
});
