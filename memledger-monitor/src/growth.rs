//! Growth rates and leak suspicion: a least-squares slope over a window of samples, so that one
//! spike is not a leak and a steady climb is.

use std::time::Duration;

/// How fast something grows, in bytes per second.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct GrowthRate {
    /// Change since the previous sample, divided by the time between them.
    pub since_last: f64,
    /// Least-squares slope over the samples in the window.
    pub window: f64,
    /// How well a straight line fits the window (the coefficient of determination, 0 to 1):
    /// near 1 for a steady climb, near 0 for noise.
    pub fit: f64,
    /// Samples in the window.
    pub samples: usize,
    /// Time spanned by those samples.
    pub span: Duration,
}

/// When a scope counts as a suspected leak.
///
/// A scope is suspected when, over the last `window`, at least `min_samples` samples spanning at
/// least half the window climb at `min_rate` bytes per second or faster, and a straight line
/// explains at least `min_fit` of their variance. A spike or a sawtooth has a poor fit; a flat
/// scope has a slope near zero.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct LeakDetection {
    /// The window the slope is fitted over (default 5 minutes).
    pub window: Duration,
    /// The slowest growth that counts, in bytes per second (default 1 KiB/s).
    pub min_rate: f64,
    /// The least coefficient of determination that counts (default 0.9).
    pub min_fit: f64,
    /// The fewest samples that count (default 10).
    pub min_samples: usize,
}

impl Default for LeakDetection {
    fn default() -> Self {
        LeakDetection {
            window: Duration::from_secs(300),
            min_rate: 1024.0,
            min_fit: 0.9,
            min_samples: 10,
        }
    }
}

impl LeakDetection {
    /// Whether `rate` describes a suspected leak.
    pub fn suspects(&self, rate: &GrowthRate) -> bool {
        rate.samples >= self.min_samples.max(2)
            && rate.span.as_secs_f64() * 2.0 >= self.window.as_secs_f64()
            && rate.window >= self.min_rate
            && rate.fit >= self.min_fit
    }
}

/// A scope that grows steadily.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct SuspectedLeak {
    /// The scope's path.
    pub path: String,
    /// Its growth.
    pub rate: GrowthRate,
    /// Its live bytes now.
    pub live_bytes: u64,
    /// The sites whose live bytes grew the most, from the sampler's profiles (see
    /// [`SamplerBuilder::profile_every`](crate::SamplerBuilder::profile_every)): since the
    /// profile taken about a leak window earlier, or since the start where there is none. Empty
    /// without sampling or before the first profile.
    #[cfg_attr(feature = "serde", serde(default))]
    pub top_sites: Vec<LeakSite>,
}

/// A site that a suspected leak's growth comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct LeakSite {
    /// The function that allocates there, with its file and line
    /// ([`Site::label`](crate::Site::label)).
    pub site: String,
    /// The site's estimated live bytes.
    pub live_bytes: u64,
    /// How much they grew over the comparison.
    pub growth_bytes: i64,
}

/// Fits `points` (seconds, bytes), the newest last, and returns their growth rate.
///
/// `since_last` comes from the last two points; `window`, `fit` and `span` from all of them.
/// Fewer than two points, or points all at the same time, give a zero rate.
pub fn growth_rate(points: &[(f64, f64)]) -> GrowthRate {
    let n = points.len();
    if n < 2 {
        return GrowthRate {
            samples: n,
            ..GrowthRate::default()
        };
    }
    let (t1, v1) = points[n - 2];
    let (t2, v2) = points[n - 1];
    let since_last = if t2 > t1 { (v2 - v1) / (t2 - t1) } else { 0.0 };
    // Centre on the means first: timestamps in seconds since some epoch and byte counts in the
    // billions would lose every digit of a slope in the naive sums.
    let mean_t = points.iter().map(|p| p.0).sum::<f64>() / n as f64;
    let mean_v = points.iter().map(|p| p.1).sum::<f64>() / n as f64;
    let (mut stt, mut stv, mut svv) = (0.0, 0.0, 0.0);
    for &(t, v) in points {
        let (dt, dv) = (t - mean_t, v - mean_v);
        stt += dt * dt;
        stv += dt * dv;
        svv += dv * dv;
    }
    let span = (points[n - 1].0 - points[0].0).max(0.0);
    if stt <= 0.0 {
        return GrowthRate {
            since_last,
            samples: n,
            ..GrowthRate::default()
        };
    }
    let slope = stv / stt;
    // A flat series is fitted perfectly by a flat line, but it is no climb: give it no fit.
    let fit = if svv > 0.0 {
        (stv * stv / (stt * svv)).clamp(0.0, 1.0)
    } else {
        0.0
    };
    GrowthRate {
        since_last,
        window: slope,
        fit,
        samples: n,
        span: Duration::try_from_secs_f64(span).unwrap_or(Duration::MAX),
    }
}

/// Largest value a sliding fit takes in, so that its exact sums cannot overflow: 1 TiB. A scope
/// larger than that is fitted as if it held 1 TiB.
const MAX_FIT_VALUE: u64 = 1 << 40;

/// Most samples a sliding fit may hold (checked by the sampler's builder).
pub(crate) const MAX_FIT_SAMPLES: u64 = 1 << 20;

/// Least-squares sums of many series sampled at the same instants, over a sliding window.
///
/// Times are whole milliseconds and values whole bytes, so every sum is an exact integer
/// (`i128` holds them for 2^20 samples of up to 2^40 bytes over a century of milliseconds):
/// adding and removing samples never drifts, and each tick costs one update per series, not a
/// pass over the window.
#[derive(Default)]
pub(crate) struct SlidingFit {
    n: i128,
    /// Σt and Σt², shared: every series has a value at every instant.
    st: i128,
    stt: i128,
    /// Per series: Σv, Σtv, Σv².
    series: Vec<[i128; 3]>,
}

impl SlidingFit {
    /// Adds (`sign == 1`) or removes (`sign == -1`) the instant `t_ms` with `values` (series
    /// beyond `values.len()` are zero at that instant).
    pub(crate) fn update(&mut self, sign: i128, t_ms: u64, values: impl Iterator<Item = u64>) {
        let t = i128::from(t_ms);
        self.n += sign;
        self.st += sign * t;
        self.stt += sign * t * t;
        for (i, v) in values.enumerate() {
            if v == 0 {
                continue;
            }
            if i >= self.series.len() {
                self.series.resize(i + 1, [0; 3]);
            }
            let v = i128::from(v.min(MAX_FIT_VALUE));
            let sums = &mut self.series[i];
            sums[0] += sign * v;
            sums[1] += sign * t * v;
            sums[2] += sign * v * v;
        }
    }

    /// Whether series `i` is zero at every instant of the window.
    pub(crate) fn is_zero(&self, i: usize) -> bool {
        self.series.get(i).is_none_or(|s| s[0] == 0)
    }

    /// The slope (bytes per second) and fit of series `i`.
    pub(crate) fn fit(&self, i: usize) -> (f64, f64) {
        let [sv, stv, svv] = self.series.get(i).copied().unwrap_or([0; 3]);
        let n = self.n;
        let var_t = n * self.stt - self.st * self.st;
        let cov = n * stv - self.st * sv;
        let var_v = n * svv - sv * sv;
        if n < 2 || var_t <= 0 {
            return (0.0, 0.0);
        }
        // Times are in milliseconds: bytes per millisecond × 1000.
        let slope = cov as f64 / var_t as f64 * 1000.0;
        let fit = if var_v > 0 {
            let r = cov as f64 / (var_t as f64).sqrt() / (var_v as f64).sqrt();
            (r * r).clamp(0.0, 1.0)
        } else {
            0.0
        };
        (slope, fit)
    }

    /// Samples in the window.
    pub(crate) fn samples(&self) -> usize {
        self.n as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator for noise.
    fn noise(seed: &mut u64) -> f64 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        (*seed % 2001) as f64 / 1000.0 - 1.0
    }

    #[test]
    fn a_steady_leak_is_found_at_its_rate() {
        let mut seed = 7;
        let rate = 250_000.0; // bytes per second
        let points: Vec<(f64, f64)> = (0..120)
            .map(|i| {
                let t = i as f64 * 0.5 + 1.7e9;
                (t, 40e6 + rate * (t - 1.7e9) + 200_000.0 * noise(&mut seed))
            })
            .collect();
        let growth = growth_rate(&points);
        assert!((growth.window - rate).abs() < rate * 0.02, "{growth:?}");
        assert!(growth.fit > 0.95, "{growth:?}");
        let detection = LeakDetection {
            window: Duration::from_secs(60),
            ..LeakDetection::default()
        };
        assert!(detection.suspects(&growth));
    }

    #[test]
    fn noise_spikes_and_sawtooths_are_not_leaks() {
        let detection = LeakDetection {
            window: Duration::from_secs(60),
            ..LeakDetection::default()
        };
        let mut seed = 11;
        let flat: Vec<(f64, f64)> = (0..120)
            .map(|i| (i as f64 * 0.5, 10e6 + 3e6 * noise(&mut seed)))
            .collect();
        let spike: Vec<(f64, f64)> = (0..120)
            .map(|i| (i as f64 * 0.5, if i == 100 { 500e6 } else { 10e6 }))
            .collect();
        let saw: Vec<(f64, f64)> = (0..120)
            .map(|i| (i as f64 * 0.5, 10e6 + (i % 20) as f64 * 1e6))
            .collect();
        for (name, series) in [("flat", flat), ("spike", spike), ("saw", saw)] {
            let growth = growth_rate(&series);
            assert!(!detection.suspects(&growth), "{name}: {growth:?}");
        }
    }

    #[test]
    fn degenerate_series_give_zero() {
        assert_eq!(growth_rate(&[]).window, 0.0);
        assert_eq!(growth_rate(&[(1.0, 5.0)]).window, 0.0);
        let same_time = growth_rate(&[(1.0, 5.0), (1.0, 9.0)]);
        assert_eq!((same_time.window, same_time.since_last), (0.0, 0.0));
        let flat = growth_rate(&[(1.0, 5.0), (2.0, 5.0), (3.0, 5.0)]);
        assert_eq!((flat.window, flat.fit), (0.0, 0.0));
        let two = growth_rate(&[(1.0, 0.0), (3.0, 10.0)]);
        assert_eq!((two.since_last, two.window), (5.0, 5.0));
        // Spans no `Duration` holds saturate instead of panicking.
        assert_eq!(growth_rate(&[(0.0, 1.0), (1e30, 2.0)]).span, Duration::MAX);
    }

    #[test]
    fn the_sliding_fit_agrees_with_the_direct_one() {
        let mut seed = 3;
        let points: Vec<(u64, [u64; 2])> = (0..400u64)
            .map(|i| {
                let t = 1_000 + i * 250;
                let leak = 5_000_000 + 3_000 * i + (noise(&mut seed) * 20_000.0) as u64 + 20_000;
                let flat = 9_000_000 + (noise(&mut seed) * 1e6) as u64 + 1_000_000;
                (t, [leak, flat])
            })
            .collect();
        let mut sliding = SlidingFit::default();
        let window = 100;
        for (k, &(t, values)) in points.iter().enumerate() {
            sliding.update(1, t, values.iter().copied());
            if k >= window {
                let (t_old, old) = points[k - window];
                sliding.update(-1, t_old, old.iter().copied());
            }
        }
        assert_eq!(sliding.samples(), window);
        for series in 0..2 {
            let direct: Vec<(f64, f64)> = points[points.len() - window..]
                .iter()
                .map(|&(t, v)| (t as f64 / 1000.0, v[series] as f64))
                .collect();
            let direct = growth_rate(&direct);
            let (slope, fit) = sliding.fit(series);
            assert!(
                (slope - direct.window).abs() <= direct.window.abs() * 1e-9 + 1e-6,
                "{slope} {direct:?}"
            );
            assert!((fit - direct.fit).abs() < 1e-9, "{fit} {direct:?}");
        }
        assert!(sliding.is_zero(2));
        assert_eq!(sliding.fit(2), (0.0, 0.0));
    }

    #[test]
    fn a_short_window_is_not_enough() {
        let points: Vec<(f64, f64)> = (0..20).map(|i| (i as f64 * 0.1, i as f64 * 1e6)).collect();
        let growth = growth_rate(&points);
        assert!(growth.fit > 0.99);
        // 1.9 s of samples against a 60 s window: too soon to call it a leak.
        let detection = LeakDetection {
            window: Duration::from_secs(60),
            ..LeakDetection::default()
        };
        assert!(!detection.suspects(&growth));
    }
}
