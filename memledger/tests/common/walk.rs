//! The assertion of which stack walk took a test binary's samples, shared by the sampling tests
//! of memledger and of memledger-monitor (included by `#[path]`).

/// The stack walk that took this process's samples is the one its build selects, and, where
/// `MEMLEDGER_EXPECT_WALK` names one (`unwinder` or `frame_pointers`; CI sets it in each build),
/// that one: `memledger/build.rs` selects frame pointers in a build with
/// `-C force-frame-pointers=yes`, and the stage that rebuilds with it counts on it.
pub fn assert_expected_walk() {
    use memledger::sampling::StackWalk;
    let walk = memledger::sampling::stack_walk();
    match std::env::var("MEMLEDGER_EXPECT_WALK").as_deref() {
        Ok("frame_pointers") => assert_eq!(walk, StackWalk::FramePointers, "the build's walk"),
        Ok("unwinder") => assert_eq!(walk, StackWalk::Unwinder, "the build's walk"),
        Ok(other) => panic!("MEMLEDGER_EXPECT_WALK={other:?}: `unwinder` or `frame_pointers`"),
        Err(_) => {}
    }
    // By (the unwinder, frame sizes it taught, frame pointers).
    let (unwound, learnt, frame_pointers) = memledger::sampling::usage().walks;
    if walk == StackWalk::FramePointers {
        // Where the frame-pointer walk exists: elsewhere the unwinder walks instead.
        if cfg!(all(
            target_os = "linux",
            target_env = "gnu",
            any(target_arch = "x86_64", target_arch = "aarch64")
        )) {
            assert!(frame_pointers > 0, "no stack walked by frame pointers");
        }
        assert_eq!(learnt, 0, "stacks walked by learnt frame sizes");
    } else {
        assert_eq!(frame_pointers, 0, "stacks walked by frame pointers");
        assert!(unwound + learnt > 0, "no stack walked");
    }
}
