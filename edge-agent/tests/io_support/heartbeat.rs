// A heartbeat of lane board 1 (firmware 1.0) whose link and readers all work, with the
// light red, the barrier lowered and no loop occupied: what the simulated board of
// `tests/io_support` sends, and what the unit tests of `src/sources/serial.rs` receive
// (they `include!` this file).

/// Board 1's heartbeat of boot `boot_id`, `uptime_ms` after it, with `unacked` frames
/// waiting for their acknowledgement.
pub fn board_heartbeat(boot_id: u32, uptime_ms: u32, unacked: u8) -> protocol::link::Message {
    use protocol::link::{Barrier, BoardStatus, Heartbeat, Light, Message};
    Message::Heartbeat(Heartbeat {
        uptime_ms,
        boot_id,
        board_id: 1,
        fw_version: 0x0100,
        status: BoardStatus {
            link_ok: true,
            uhf_reader_ok: true,
            seal_reader_ok: true,
            light: Light::Red,
            barrier: Barrier::Lower,
            presence: 0,
            unacked,
        },
    })
}
