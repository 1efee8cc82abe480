//! Threshold rules on canary scores: guess "in" for every canary scoring at least the
//! threshold. Of all thresholds, only the vertices of the concave hull of the ROC points can
//! give the best bound; the others are dropped before any bound is computed, and the
//! Bonferroni correction counts the vertices kept (as jax_privacy does).

/// One threshold rule and what it guessed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Rule {
    /// Canaries scoring at least this are guessed "in".
    pub threshold: f64,
    /// Canaries guessed "in".
    pub guesses: u64,
    /// Of them, canaries that were in.
    pub correct: u64,
}

/// A point of the ROC curve in counts: held-in and held-out canaries scoring *below* a
/// threshold (false and true negatives).
#[derive(Clone, Copy, Debug)]
struct Point {
    false_neg: u64,
    true_neg: u64,
    threshold: f64,
}

/// Whether `b` is a strict upper-hull turn between `a` and `c` (points in threshold order).
fn turns_down(a: &Point, b: &Point, c: &Point) -> bool {
    let (dx1, dy1) = (
        b.false_neg as i128 - a.false_neg as i128,
        b.true_neg as i128 - a.true_neg as i128,
    );
    let (dx2, dy2) = (
        c.false_neg as i128 - b.false_neg as i128,
        c.true_neg as i128 - b.true_neg as i128,
    );
    dy1 * dx2 - dy2 * dx1 > 0
}

/// The rules at the hull's vertices, from the lowest threshold (every canary guessed) to +∞
/// (none). Scores must be finite and each set non-empty (checked by the caller).
pub(crate) fn hull_rules(in_scores: &[f64], out_scores: &[f64]) -> Vec<Rule> {
    let mut ins = in_scores.to_vec();
    let mut outs = out_scores.to_vec();
    ins.sort_by(f64::total_cmp);
    outs.sort_by(f64::total_cmp);
    let mut thresholds: Vec<f64> = ins.iter().chain(&outs).copied().collect();
    thresholds.sort_by(f64::total_cmp);
    thresholds.dedup();
    thresholds.push(f64::INFINITY);

    // Monotone chain over the points in threshold order (both counts non-decreasing).
    let mut hull: Vec<Point> = Vec::new();
    let (mut fn_count, mut tn_count) = (0usize, 0usize);
    for &threshold in &thresholds {
        while fn_count < ins.len() && ins[fn_count] < threshold {
            fn_count += 1;
        }
        while tn_count < outs.len() && outs[tn_count] < threshold {
            tn_count += 1;
        }
        let point = Point {
            false_neg: fn_count as u64,
            true_neg: tn_count as u64,
            threshold,
        };
        while hull.len() >= 2 && !turns_down(&hull[hull.len() - 2], &hull[hull.len() - 1], &point) {
            hull.pop();
        }
        hull.push(point);
    }
    let (n_in, n_out) = (ins.len() as u64, outs.len() as u64);
    hull.iter()
        .map(|p| Rule {
            threshold: p.threshold,
            guesses: (n_in - p.false_neg) + (n_out - p.true_neg),
            correct: n_in - p.false_neg,
        })
        .collect()
}

/// The rule of a threshold fixed in advance.
pub(crate) fn fixed_rule(in_scores: &[f64], out_scores: &[f64], threshold: f64) -> Rule {
    let correct = in_scores.iter().filter(|s| **s >= threshold).count() as u64;
    let wrong = out_scores.iter().filter(|s| **s >= threshold).count() as u64;
    Rule {
        threshold,
        guesses: correct + wrong,
        correct,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collinear_points_leave_only_the_ends() {
        // Identical sets: every ROC point is on the diagonal.
        let s = [1.0, 2.0, 3.0, 4.0];
        let rules = hull_rules(&s, &s);
        assert_eq!(rules.len(), 2);
        assert_eq!((rules[0].guesses, rules[0].correct), (8, 4));
        assert_eq!((rules[1].guesses, rules[1].correct), (0, 0));
        assert_eq!(rules[1].threshold, f64::INFINITY);
    }

    #[test]
    fn a_perfect_separation_keeps_the_corner() {
        let rules = hull_rules(&[5.0, 6.0, 7.0], &[1.0, 2.0]);
        // Thresholds 1, 2, 5, 6, 7, ∞; the corner is at 5 (all in guessed, no out).
        assert_eq!(rules.len(), 3);
        assert_eq!(
            rules[1],
            Rule {
                threshold: 5.0,
                guesses: 3,
                correct: 3
            }
        );
    }

    #[test]
    fn a_dent_in_the_curve_is_skipped() {
        // in: 3, 10; out: 1, 2, 4. Points (fn, tn) at thresholds 1,2,3,4,10,∞:
        // (0,0) (0,1) (0,2) (1,2) (1,3) (2,3). The hull keeps (0,0), (0,2), (1,3), (2,3).
        let rules = hull_rules(&[3.0, 10.0], &[1.0, 2.0, 4.0]);
        let thresholds: Vec<f64> = rules.iter().map(|r| r.threshold).collect();
        assert_eq!(thresholds, vec![1.0, 3.0, 10.0, f64::INFINITY]);
    }

    #[test]
    fn a_fixed_threshold_counts_scores_at_or_above_it() {
        let r = fixed_rule(&[1.0, 2.0, 3.0], &[0.0, 2.0], 2.0);
        assert_eq!((r.guesses, r.correct), (3, 2));
    }
}
