//! What every object of this crate needs besides its programs.

// Header words are read and written in memory order on a little-endian
// target (see `parse::pkt`); a big-endian build would need other shifts.
#[cfg(target_endian = "big")]
compile_error!("the fast path assumes a little-endian BPF target (bpfel)");

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any program that could reach this; it exists only
    // to satisfy no_std.
    loop {}
}
