//! Per-second series of bounded length, so that a run of any length keeps its time series in
//! a fixed amount of memory. Up to [`POINTS_MAX`] points a series holds one point per
//! second; past that, neighbouring points join two by two and each point covers twice as
//! many seconds from then on (1 s, 2 s, 4 s, ...), as a chart of a long soak would bin them.
//! The interval logs on disk keep every second.

/// Points a series holds at most (68 minutes at one per second).
pub const POINTS_MAX: usize = 4096;

/// A point of a series: the second it stands for, and how a later point of the same span
/// joins it.
pub trait Point {
    fn second(&self) -> u32;
    /// Takes `later` (of the same span) into this point.
    fn absorb(&mut self, later: Self);
}

/// A series of at most `max` points, each covering `width` seconds.
#[derive(Debug, Clone)]
pub struct Bounded<T> {
    points: Vec<T>,
    width: u32,
    max: usize,
}

impl<T: Point> Default for Bounded<T> {
    fn default() -> Self {
        Bounded::with_max(POINTS_MAX)
    }
}

impl<T: Point> Bounded<T> {
    pub fn with_max(max: usize) -> Self {
        Bounded {
            points: Vec::new(),
            width: 1,
            max: max.max(2),
        }
    }

    /// Adds the point of a later second: into the last point if it falls in its span, else
    /// as a new one; past `max` points, the spans double.
    pub fn push(&mut self, point: T) {
        let span = |p: &T| p.second() / self.width;
        match self.points.last_mut() {
            Some(last) if span(last) == span(&point) => last.absorb(point),
            _ => self.points.push(point),
        }
        if self.points.len() > self.max {
            self.width = self.width.saturating_mul(2);
            let width = self.width;
            let mut joined: Vec<T> = Vec::with_capacity(self.points.len() / 2 + 1);
            for p in self.points.drain(..) {
                match joined.last_mut() {
                    Some(last) if last.second() / width == p.second() / width => last.absorb(p),
                    _ => joined.push(p),
                }
            }
            self.points = joined;
        }
    }

    pub fn points(&self) -> &[T] {
        &self.points
    }

    /// Seconds each point covers now.
    pub fn width(&self) -> u32 {
        self.width
    }

    pub fn set(&mut self, points: Vec<T>) {
        self.points = points;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A count per second; a joined point sums its seconds.
    #[derive(Debug, Clone, PartialEq)]
    struct Count(u32, u64);

    impl Point for Count {
        fn second(&self) -> u32 {
            self.0
        }
        fn absorb(&mut self, later: Self) {
            self.1 += later.1;
        }
    }

    #[test]
    fn a_long_series_stays_within_its_bound_and_keeps_every_count() {
        let mut s = Bounded::with_max(8);
        for second in 0..100 {
            s.push(Count(second, 1));
            assert!(s.points().len() <= 8, "{}", s.points().len());
        }
        assert_eq!(s.width(), 16);
        assert_eq!(s.points().iter().map(|c| c.1).sum::<u64>(), 100);
        // Each point starts its span and covers `width` seconds (the last one fewer).
        let starts: Vec<u32> = s.points().iter().map(|c| c.0).collect();
        assert_eq!(starts, [0, 16, 32, 48, 64, 80, 96]);
    }

    #[test]
    fn a_short_series_keeps_one_point_per_second() {
        let mut s = Bounded::with_max(8);
        for second in [0, 1, 3, 4] {
            s.push(Count(second, 2));
        }
        assert_eq!(s.width(), 1);
        assert_eq!(
            s.points(),
            [Count(0, 2), Count(1, 2), Count(3, 2), Count(4, 2)]
        );
    }
}
