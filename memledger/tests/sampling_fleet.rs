//! Processes sample independently, so that a fleet's profiles add up: each process draws its
//! seed from the system's entropy, unless it sets one.
//!
//! The processes are this test binary itself, run again as children with `FLEET_CHILD` set:
//! each runs the ignored test `fleet_child`, which allocates a fixed pattern (1,024 blocks of
//! 8 KiB in one scope, at a rate of 64 KiB) and prints the sequence numbers of the blocks that
//! were sampled (told by the count of live samples rising across the allocation, an identity
//! that does not depend on addresses) and the scope's estimated live bytes.
//!
//! # The bounds
//!
//! A block of `s` bytes is sampled with probability `p = 1 - exp(-s / R)`, here about 0.118,
//! independently of every other, and stands for `s / p` bytes. So:
//!
//! - two independent processes sample about `n p` blocks each, and share each block with
//!   probability `p^2`: their common blocks are binomial with mean `n p^2` (about 14 of some
//!   120); processes that drew the same seed would share all of them;
//! - one process's estimate of the `n s` bytes has variance `n s^2 (1 - p) / p`, and the mean of
//!   `k` independent processes' estimates a `k` times smaller one: its standard deviation `σ_k`
//!   falls as `1 / sqrt(k)`. Over `g` groups of `k` processes, `g (rms / σ_k)^2` (the rms of the
//!   group means' errors against the truth) is chi-squared with `g` degrees of freedom, under
//!   the normal approximation (over 100 samples a process). The bounds on `rms / σ_k` are that
//!   distribution's quantiles of probability 10^-6 at either end (Wilson and Hilferty's
//!   approximation), so a run fails by chance about once in a million; a fleet whose processes
//!   sampled the same blocks would show `rms / σ_k` near `sqrt(k)`, past the upper bound for
//!   `k = 16`.
#![cfg(feature = "sampling")]

use std::hint::black_box;
use std::process::{Command, Stdio};

#[global_allocator]
static GLOBAL: memledger::Ledger<std::alloc::System> = memledger::Ledger::new(std::alloc::System);

const SCOPE: &str = "fleet";
const BLOCKS: usize = 1024;
const BLOCK: usize = 8 * 1024;
const RATE: u64 = 64 * 1024;
/// The environment variable that makes `fleet_child` run; its value is the seed to set, or
/// `entropy` for none.
const CHILD: &str = "FLEET_CHILD";
/// Processes in the fleet: groups of 1, 4 and 16 of them.
const FLEET: usize = 128;
/// The standard normal quantile of probability 10^-6.
const Z: f64 = 4.753;

/// One child's report.
#[derive(Debug)]
struct Report {
    /// Sequence numbers of the sampled blocks, in order.
    sampled: Vec<u32>,
    /// The scope's estimated live bytes.
    estimate: f64,
}

/// What one process does: the fixed pattern, and its samples printed on one line.
#[test]
#[ignore = "run as a child process by the tests below"]
fn fleet_child() {
    let Ok(seed) = std::env::var(CHILD) else {
        panic!("{CHILD} is not set: this test is run by the others, in a process of its own");
    };
    if let Ok(seed) = seed.parse::<u64>() {
        memledger::sampling::set_seed(seed);
    }
    memledger::sampling::set_rate(RATE).unwrap();
    let mut sampled: Vec<u32> = Vec::with_capacity(BLOCKS);
    let mut blocks: Vec<Vec<u8>> = Vec::with_capacity(BLOCKS);
    memledger::in_scope(SCOPE, || {
        for i in 0..BLOCKS {
            let before = memledger::sampling::usage().live_samples;
            blocks.push(black_box(vec![1u8; BLOCK]));
            if memledger::sampling::usage().live_samples > before {
                sampled.push(i as u32);
            }
        }
    });
    let estimate: u64 = memledger::sampling::sites()
        .scope(SCOPE)
        .map(|s| s.live.bytes)
        .sum();
    let list: Vec<String> = sampled.iter().map(u32::to_string).collect();
    println!("fleet-child estimate={estimate} sampled={}", list.join(","));
    drop(blocks);
}

/// Runs `n` children at once, with `seed` (a number, or `entropy`), and reads their reports.
fn run_children(n: usize, seed: &str) -> Vec<Report> {
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..n)
        .map(|_| {
            Command::new(&exe)
                .args(["fleet_child", "--exact", "--ignored", "--nocapture"])
                .args(["--test-threads", "1"])
                .env(CHILD, seed)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("the test binary runs again as a child")
        })
        .collect();
    children
        .into_iter()
        .map(|child| {
            let out = child.wait_with_output().unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "a child failed ({}):\n{stdout}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            let line = stdout
                .lines()
                .find_map(|l| l.split_once("fleet-child ").map(|(_, report)| report))
                .unwrap_or_else(|| panic!("no report in the child's output:\n{stdout}"));
            let (estimate, sampled) = line
                .strip_prefix("estimate=")
                .and_then(|l| l.split_once(" sampled="))
                .unwrap_or_else(|| panic!("a malformed report: {line:?}"));
            Report {
                estimate: estimate.parse().unwrap(),
                sampled: sampled
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(|s| s.parse().unwrap())
                    .collect(),
            }
        })
        .collect()
}

fn probability() -> f64 {
    1.0 - (-(BLOCK as f64) / RATE as f64).exp()
}

#[test]
fn processes_sample_different_blocks_unless_seeded_alike() {
    let p = probability();
    let fleet = run_children(2, "entropy");
    let (a, b) = (&fleet[0].sampled, &fleet[1].sampled);
    let common = a.iter().filter(|i| b.contains(i)).count() as f64;
    // Binomial(n, p^2): its mean and 6 standard deviations.
    let mean = BLOCKS as f64 * p * p;
    let bound = mean + 6.0 * (BLOCKS as f64 * p * p * (1.0 - p * p)).sqrt();
    eprintln!(
        "two processes sampled {} and {} blocks, {common} in common (independent: {mean:.1} \
         expected, at most {bound:.1} allowed)",
        a.len(),
        b.len()
    );
    assert!(
        !a.is_empty() && !b.is_empty(),
        "a process sampled nothing: {fleet:?}"
    );
    assert!(
        common <= bound,
        "two processes share {common} of their sampled blocks ({} and {}): independent ones \
         share about {mean:.1}\n{a:?}\n{b:?}",
        a.len(),
        b.len()
    );

    // A seed set in each process takes the same samples in both.
    let seeded = run_children(2, "42");
    assert!(!seeded[0].sampled.is_empty());
    assert_eq!(
        seeded[0].sampled, seeded[1].sampled,
        "two processes with the seed 42 sampled different blocks"
    );
    assert_eq!(seeded[0].estimate, seeded[1].estimate);
}

/// The quantile of probability `z`'s normal tail of the chi-squared distribution with `g`
/// degrees of freedom, divided by `g` (Wilson and Hilferty): the bound on `(rms / σ)^2`.
fn chi2_over_g(g: f64, z: f64) -> f64 {
    let h = 2.0 / (9.0 * g);
    (1.0 - h + z * h.sqrt()).max(0.0).powi(3)
}

#[test]
fn a_fleets_mean_estimate_tightens_as_one_over_root_k() {
    let p = probability();
    let truth = (BLOCKS * BLOCK) as f64;
    let sigma_1 = BLOCK as f64 * (BLOCKS as f64 * (1.0 - p) / p).sqrt();
    let fleet = run_children(FLEET, "entropy");
    let estimates: Vec<f64> = fleet.iter().map(|r| r.estimate).collect();
    let mut failures = Vec::new();
    for k in [1usize, 4, 16] {
        let groups: Vec<f64> = estimates
            .chunks_exact(k)
            .map(|c| c.iter().sum::<f64>() / k as f64)
            .collect();
        let g = groups.len() as f64;
        let rms = (groups.iter().map(|m| (m - truth).powi(2)).sum::<f64>() / g).sqrt();
        let sigma_k = sigma_1 / (k as f64).sqrt();
        let ratio = rms / sigma_k;
        let (low, high) = (chi2_over_g(g, -Z).sqrt(), chi2_over_g(g, Z).sqrt());
        eprintln!(
            "k = {k:2}: {g:3} groups, rms error of the mean {:.1} KiB, predicted {:.1} KiB \
             (ratio {ratio:.2}, allowed {low:.2} to {high:.2})",
            rms / 1024.0,
            sigma_k / 1024.0
        );
        if !(low..=high).contains(&ratio) {
            failures.push(format!(
                "k = {k}: rms / σ_k = {ratio:.2}, outside {low:.2} to {high:.2}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{failures:?}\nestimates: {estimates:?}"
    );
}
