//! The learning rate at t = 0: the rate whose single pass over a sample of
//! examples gives the lowest objective there (what svmsgd does).

use super::{dot, hinge, Bias, SvmState, CALIBRATION_STEPS};
use crate::data::libsvm::SparseDataset;

/// `λ/2 ||w||² + mean hinge` of the plain state on `idx`.
fn sample_cost(st: &mut SvmState, data: &SparseDataset, labels: &[f64], idx: &[u32]) -> f64 {
    st.plain();
    let (w, b) = st.eval_model();
    let loss: f64 = idx
        .iter()
        .map(|&i| hinge(labels[i as usize], dot(w, data.features(i as usize)) + b))
        .sum();
    let norm: f64 = w.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
    0.5 * st.lambda * norm + loss / idx.len().max(1) as f64
}

/// The cost on the sample after one pass with constant `eta` from zero.
pub(super) fn try_eta(
    d: usize,
    (lambda, bias): (f64, Option<Bias>),
    data: &SparseDataset,
    labels: &[f64],
    idx: &[u32],
    eta: f64,
) -> f64 {
    if eta * lambda >= 1.0 {
        return f64::INFINITY;
    }
    let mut st = SvmState::new(d, lambda, bias, false, eta);
    for &i in idx {
        st.step(data.features(i as usize), labels[i as usize], eta);
    }
    let c = sample_cost(&mut st, data, labels, idx);
    if c.is_finite() {
        c
    } else {
        f64::INFINITY
    }
}

/// Calibrates `η0` on `idx` (see the module documentation).
pub(super) fn calibrate(
    d: usize,
    (lambda, bias): (f64, Option<Bias>),
    data: &SparseDataset,
    labels: &[f64],
    idx: &[u32],
) -> f64 {
    const FACTOR: f64 = 2.0;
    let cost = |eta: f64| try_eta(d, (lambda, bias), data, labels, idx, eta);
    let mut lo = 1.0;
    let mut lo_cost = cost(lo);
    let mut hi = lo * FACTOR;
    let mut hi_cost = cost(hi);
    if lo_cost < hi_cost {
        // Smaller is better: halve while it keeps improving.
        for _ in 0..CALIBRATION_STEPS {
            if lo_cost >= hi_cost {
                break;
            }
            hi = lo;
            hi_cost = lo_cost;
            lo = hi / FACTOR;
            lo_cost = cost(lo);
        }
    } else if hi_cost < lo_cost {
        // Larger is better: double while it keeps improving.
        for _ in 0..CALIBRATION_STEPS {
            if hi_cost >= lo_cost {
                break;
            }
            lo = hi;
            lo_cost = hi_cost;
            hi = lo * FACTOR;
            hi_cost = cost(hi);
        }
    }
    // Keep the rate usable by the regularisation step.
    lo.min(0.5 / lambda)
}
