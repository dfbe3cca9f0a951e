//! The layers' one clock: the runtime's (design §3.2). Every layer reads the time here — its
//! sans-IO core's deadlines (TCPCL keepalives and idle limits, STCP stalls, the UDP token
//! bucket), its drivers' sleeps and timeouts, its log windows — so a paused tokio clock
//! (`tokio::time::pause`, `#[tokio::test(start_paused = true)]`) moves all of them at once and
//! a test of a layer's timing needs no real sleep. (`std::time::Instant::now()` would not
//! move with it: a token bucket refilled by it never fills while its sender sleeps in paused
//! time.)

/// Now, on the runtime's clock (virtual when the runtime's time is paused): the agent's own
/// log windows read the same ([`bpa::time::monotonic_now`]).
pub use bpa::time::monotonic_now as now;
