//! Webhook verification throughput (filled in below).

fn main() {}
