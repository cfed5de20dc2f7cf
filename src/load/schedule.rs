//! Arrival schedules: when each order is due, planned before the run starts.
//!
//! The phases define a rate curve r(t); its integral Λ(t) counts expected arrivals. Arrival
//! i is due at Λ⁻¹(sᵢ), with sᵢ = i for uniform arrivals and sᵢ a unit-rate Poisson process
//! for Poisson arrivals (time rescaling), so ramps get exactly the planned shape either way.
//! The schedule is pure: same scenario and seed, same instants.

use std::time::Duration;

use rand_distr::{Distribution, Exp1};

use crate::clock::{RunTime, duration_ns};
use crate::load::model::{Arrivals, Load, PhaseKind};

/// One phase on the run's clock.
#[derive(Debug, Clone, Copy, PartialEq)]
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct PlannedPhase {
    pub kind: PhaseKind,
    pub start: RunTime,
    pub end: RunTime,
    /// Expected arrivals in the phase (Λ over the phase).
    pub expected: f64,
}

impl PlannedPhase {
    fn rates(&self) -> (f64, f64) {
        self.kind.rates()
    }

    fn seconds(&self) -> f64 {
        (self.end - self.start) as f64 / 1e9
    }

    /// Planned rate at run time `t` (inside the phase).
    pub fn rate_at(&self, t: RunTime) -> f64 {
        let (from, to) = self.rates();
        let d = self.seconds();
        if d <= 0.0 {
            return from;
        }
        let x = (t.saturating_sub(self.start)) as f64 / 1e9;
        from + (to - from) * (x / d).min(1.0)
    }

    /// Seconds into the phase at which Λ (from its start) reaches `c`.
    fn inverse(&self, c: f64) -> f64 {
        let (from, to) = self.rates();
        let d = self.seconds();
        let a = (to - from) / (2.0 * d);
        // Solves a·τ² + from·τ = c in the form that stays exact when a → 0.
        let disc = (from * from + 4.0 * a * c).max(0.0);
        let denom = from + disc.sqrt();
        if denom <= 0.0 { 0.0 } else { 2.0 * c / denom }
    }
}

/// The run's plan: its phases and, drawn again whenever asked, each order's due time. The
/// due times are not kept: a 10-million-order run would hold 76 MiB of them, and the driver
/// needs them only once, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub phases: Vec<PlannedPhase>,
    /// End of the last phase.
    pub end: RunTime,
    arrivals: Arrivals,
    seed: u64,
    orders: usize,
    /// Arrivals due in each second of run time, counted when the schedule was planned.
    per_second: Vec<u64>,
}

impl Schedule {
    pub fn plan(load: &Load, seed: u64) -> Schedule {
        let mut phases = Vec::with_capacity(load.phases.len());
        let mut start = 0;
        for phase in &load.phases {
            let end = start + duration_ns(phase.duration);
            // The same count validation holds to its limits.
            phases.push(PlannedPhase {
                kind: phase.kind,
                start,
                end,
                expected: phase.expected_orders(),
            });
            start = end;
        }
        let mut schedule = Schedule {
            phases,
            end: start,
            arrivals: load.arrivals,
            seed,
            orders: 0,
            per_second: Vec::new(),
        };
        // One pass over the due times counts the orders and fills the seconds.
        let (mut orders, mut per_second) =
            (0, vec![0u64; schedule.end.div_ceil(1_000_000_000) as usize]);
        for at in schedule.due_times() {
            orders += 1;
            if let Some(slot) = per_second.get_mut((at / 1_000_000_000) as usize) {
                *slot += 1;
            }
        }
        schedule.orders = orders;
        schedule.per_second = per_second;
        schedule
    }

    /// Orders planned; order ids are `0..orders()`.
    pub fn orders(&self) -> usize {
        self.orders
    }

    /// Each order's due time in order of id (ascending), drawn from the seed.
    pub fn due_times(&self) -> DueTimes<'_> {
        let mut rng = crate::rng::for_component(self.seed, "load.arrivals");
        let s = match self.arrivals {
            Arrivals::Uniform => 0.0,
            Arrivals::Poisson => Exp1.sample(&mut rng),
        };
        DueTimes {
            schedule: self,
            rng,
            s,
            phase: 0,
            base: 0.0,
        }
    }

    /// The phase running at `t`, if any.
    pub fn phase_at(&self, t: RunTime) -> Option<(usize, &PlannedPhase)> {
        self.phases
            .iter()
            .enumerate()
            .find(|(_, p)| p.start <= t && t < p.end)
    }

    /// Planned arrivals per second of run time (from the due times).
    pub fn planned_per_second(&self) -> Vec<u64> {
        self.per_second.clone()
    }
}

/// The due times of a [`Schedule`], in order of id.
pub struct DueTimes<'a> {
    schedule: &'a Schedule,
    rng: crate::rng::Rng,
    /// Λ of the next arrival (time rescaling: arrival i is due at Λ⁻¹(sᵢ)).
    s: f64,
    phase: usize,
    /// Λ at the start of the current phase.
    base: f64,
}

impl Iterator for DueTimes<'_> {
    type Item = RunTime;

    fn next(&mut self) -> Option<RunTime> {
        loop {
            let p = self.schedule.phases.get(self.phase)?;
            if self.s >= self.base + p.expected {
                self.base += p.expected;
                self.phase += 1;
                continue;
            }
            let tau = p.inverse(self.s - self.base).clamp(0.0, p.seconds());
            let at = p.start + duration_ns(Duration::from_secs_f64(tau));
            self.s += match self.schedule.arrivals {
                Arrivals::Uniform => 1.0,
                Arrivals::Poisson => Exp1.sample(&mut self.rng),
            };
            return Some(at.min(p.end.saturating_sub(1)).max(p.start));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::units::Rate;
    use crate::load::model::Phase;
    use proptest::prelude::*;

    fn load(arrivals: Arrivals, phases: Vec<Phase>) -> Load {
        Load {
            arrivals,
            checkout_timeout: Duration::from_secs(2),
            checkout_mode: crate::load::model::CheckoutMode::Async,
            max_in_flight: 10_000,
            phases,
            drain: Duration::from_secs(30),
            max_send_lag: Duration::from_millis(100),
        }
    }

    fn black_friday() -> Vec<Phase> {
        let s = Duration::from_secs;
        vec![
            Phase {
                kind: PhaseKind::Ramp {
                    from: Rate(50.0),
                    to: Rate(500.0),
                },
                duration: s(30),
            },
            Phase {
                kind: PhaseKind::Hold { rate: Rate(500.0) },
                duration: s(40),
            },
            Phase {
                kind: PhaseKind::Spike { rate: Rate(1500.0) },
                duration: s(15),
            },
            Phase {
                kind: PhaseKind::Pause,
                duration: s(5),
            },
            Phase {
                kind: PhaseKind::Hold { rate: Rate(300.0) },
                duration: s(20),
            },
        ]
    }

    #[test]
    fn uniform_arrivals_hit_the_planned_count_exactly() {
        let s = Schedule::plan(&load(Arrivals::Uniform, black_friday()), 7);
        // 8 250 in the ramp + 20 000 + 22 500 + 0 + 6 000.
        assert_eq!(s.orders(), 56_750);
        let per_sec = s.planned_per_second();
        // First second of the ramp: the rate climbs 50 -> 65/s, Λ(1) = 57.5, so 58 arrivals.
        assert_eq!(per_sec[0], 58);
        assert_eq!(per_sec[40], 500);
        assert_eq!(per_sec[80], 1500);
        assert_eq!(per_sec[87], 0); // the pause
        assert_eq!(per_sec[100], 300);
    }

    #[test]
    fn poisson_arrivals_follow_the_curve_and_the_seed() {
        let l = load(Arrivals::Poisson, black_friday());
        let a = Schedule::plan(&l, 7);
        let due = |s: &Schedule| s.due_times().collect::<Vec<_>>();
        assert_eq!(due(&a), due(&Schedule::plan(&l, 7)));
        assert_ne!(due(&a), due(&Schedule::plan(&l, 8)));
        // Within 1 % of the expectation (sd of a Poisson count of 56 750 is ~238).
        assert!((56_000..57_500).contains(&a.orders()), "{}", a.orders());
        let spike: u64 = a.planned_per_second()[70..85].iter().sum();
        assert!((21_800..23_200).contains(&spike), "{spike}");
    }

    proptest! {
        #[test]
        fn due_times_are_sorted_and_inside_their_phases(
            from in 0.0f64..2_000.0, to in 0.0f64..2_000.0, secs in 1u64..20, seed: u64,
            poisson: bool,
        ) {
            let phases = vec![
                Phase { kind: PhaseKind::Ramp { from: Rate(from), to: Rate(to) }, duration: Duration::from_secs(secs) },
                Phase { kind: PhaseKind::Hold { rate: Rate(10.0) }, duration: Duration::from_secs(1) },
            ];
            let arrivals = if poisson { Arrivals::Poisson } else { Arrivals::Uniform };
            let s = Schedule::plan(&load(arrivals, phases), seed);
            let due: Vec<_> = s.due_times().collect();
            prop_assert_eq!(due.len(), s.orders());
            prop_assert!(due.windows(2).all(|w| w[0] <= w[1]));
            prop_assert!(due.iter().all(|&t| t < s.end));
            if !poisson {
                let expected = (from + to) / 2.0 * secs as f64 + 10.0;
                prop_assert!((s.orders() as f64 - expected).abs() <= 2.0, "{} vs {}", s.orders(), expected);
            }
        }
    }
}
