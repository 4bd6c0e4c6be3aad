//! Placeholder so the workspace loads while the DNS server is being written; replace me.
