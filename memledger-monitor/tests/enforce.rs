//! Enforced scope budgets: a sampler's limits apply while it runs, then each scope gets its own
//! limit back, whatever order the samplers stop in.

#[global_allocator]
static GLOBAL: memledger::Ledger<std::alloc::System> = memledger::Ledger::new(std::alloc::System);

/// A sampler's enforced scope budget applies while it runs; then the scope gets its own limit
/// back.
#[test]
fn a_sampler_restores_the_limits_it_replaced() {
    let path = "enforce_sampler";
    memledger::limit_scope(path, Some(5 << 20)).unwrap();
    let sampler = memledger_monitor::Sampler::builder()
        .interval(std::time::Duration::from_secs(3600))
        .budget(
            memledger_monitor::Budget::builder()
                .total(1 << 40)
                .build()
                .unwrap(),
        )
        .scope_budget(
            path,
            memledger_monitor::ScopeBudget::new(1 << 19, 1 << 20)
                .unwrap()
                .enforced(),
        )
        .start()
        .unwrap();
    let limit = || memledger::snapshot().scope(path).unwrap().limit_bytes;
    assert_eq!(limit(), Some(1 << 20));
    {
        let _g = memledger::enter(path);
        let mut v: Vec<u8> = Vec::new();
        assert!(v.try_reserve_exact(2 << 20).is_err());
    }
    let status = sampler.sample_now().status.clone();
    assert_eq!(status.scopes[0].refused_allocations, 1);
    sampler.stop();
    assert_eq!(limit(), Some(5 << 20));
    memledger::limit_scope(path, None).unwrap();
}

/// Samplers that enforce limits on the same scope may stop in any order: the newest running one's
/// limit applies, and after the last the scope's own limit, including one set meanwhile.
#[test]
fn samplers_stopping_in_any_order_leave_the_scope_its_own_limit() {
    let path = "enforce_order";
    let limit = || memledger::snapshot().scope(path).unwrap().limit_bytes;
    let start = |hard: u64| {
        memledger_monitor::Sampler::builder()
            .interval(std::time::Duration::from_secs(3600))
            .budget(
                memledger_monitor::Budget::builder()
                    .total(1 << 40)
                    .build()
                    .unwrap(),
            )
            .scope_budget(
                path,
                memledger_monitor::ScopeBudget::new(hard / 2, hard)
                    .unwrap()
                    .enforced(),
            )
            .start()
            .unwrap()
    };
    memledger::limit_scope(path, None).unwrap();
    let a = start(1_000_000);
    let b = start(2_000_000);
    assert_eq!(limit(), Some(2_000_000));
    a.stop();
    assert_eq!(limit(), Some(2_000_000));
    b.stop();
    assert_eq!(limit(), None);

    let a = start(1_000_000);
    let b = start(2_000_000);
    b.stop();
    assert_eq!(limit(), Some(1_000_000));
    // Set by hand while a sampler holds the scope: applies now, and stays after.
    memledger::limit_scope(path, Some(3_000_000)).unwrap();
    assert_eq!(limit(), Some(3_000_000));
    a.stop();
    assert_eq!(limit(), Some(3_000_000));
    memledger::limit_scope(path, None).unwrap();
}
