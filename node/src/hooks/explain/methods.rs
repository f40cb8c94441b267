//! The attribution methods over an [`Evaluator`]: integrated gradients, occlusion and
//! sampling Shapley (saliency is one gradient call, in `mod.rs`).

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use super::evaluator::{Evaluator, Input, Unit, budget};
use super::params::ExplainParams;
use crate::error::NodeError;

pub(super) async fn integrated_gradients(
    ev: &Evaluator<'_>,
    xs: &[Input],
    p: &ExplainParams,
) -> Result<Vec<Vec<f32>>, NodeError> {
    let steps = p.steps;
    let b = p.baseline;
    let mut sum: Vec<Vec<f32>> = xs
        .iter()
        .map(|x| vec![0.0; x.values.as_ref().map_or(0, Vec::len)])
        .collect();
    let point = |alpha: f32| -> Unit {
        xs.iter()
            .map(|x| {
                x.values
                    .as_ref()
                    .map(|v| v.iter().map(|&xi| b + alpha * (xi - b)).collect())
            })
            .collect()
    };
    let per_call = ev.units_per_call()?;
    let alphas: Vec<f32> = (0..steps)
        .map(|k| (k as f32 + 0.5) / steps as f32)
        .collect();
    for chunk in alphas.chunks(per_call) {
        // Gradient calls run one at a time; each holds its chunk's room until it answers.
        let _room = ev.reserve(chunk.len() * ev.unit_bytes())?;
        let units: Vec<_> = chunk.iter().map(|&a| point(a)).collect();
        let inputs = if ev.batched {
            ev.stack(&units)?
        } else {
            ev.tensors(&units[0])?
        };
        let g = ev.gradients_of(inputs, chunk.len()).await?;
        for (i, gi) in g.iter().enumerate() {
            let n = sum[i].len();
            if n == 0 {
                continue;
            }
            for (j, v) in gi.iter().enumerate() {
                sum[i][j % n] += v;
            }
        }
    }
    Ok(xs
        .iter()
        .zip(sum)
        .map(|(x, s)| match &x.values {
            Some(v) => v
                .iter()
                .zip(s)
                .map(|(&xi, si)| (xi - b) * si / steps as f32)
                .collect(),
            None => Vec::new(),
        })
        .collect())
}

/// Feature groups of `window` consecutive features, per attributed input: (input, start, end).
pub(super) fn groups(xs: &[Input], window: usize) -> Vec<(usize, usize, usize)> {
    let mut g = Vec::new();
    for (i, x) in xs.iter().enumerate() {
        if x.values.is_none() {
            continue;
        }
        let mut s = 0;
        while s < x.features {
            g.push((i, s, (s + window).min(x.features)));
            s += window;
        }
    }
    g
}

/// Sets group `g` to `value` in every row of `unit`.
pub(super) fn set_group(
    unit: &mut [Option<Vec<f32>>],
    xs: &[Input],
    g: (usize, usize, usize),
    src: Option<&[Option<Vec<f32>>]>,
    b: f32,
    rows: usize,
) {
    let (i, s, e) = g;
    let f = xs[i].features;
    if let Some(v) = unit[i].as_mut() {
        for r in 0..rows {
            for j in s..e {
                v[r * f + j] = match src {
                    Some(src) => src[i].as_ref().map_or(b, |x| x[r * f + j]),
                    None => b,
                };
            }
        }
    }
}

pub(super) async fn occlusion(
    ev: &Evaluator<'_>,
    xs: &[Input],
    p: &ExplainParams,
    value: &[f32],
) -> Result<Vec<Vec<f32>>, NodeError> {
    let gs = groups(xs, p.window);
    budget(
        gs.len(),
        "occlusion",
        "raise explain_window to occlude larger groups",
    )?;
    let x: Unit = xs.iter().map(|x| x.values.clone()).collect();
    // Unit k: the input with group k occluded, made only when its chunk is sent.
    let occluded = |k: usize| {
        let mut u = x.clone();
        set_group(&mut u, xs, gs[k], None, p.baseline, ev.rows);
        u
    };
    let f = ev.values(gs.len(), occluded).await?;
    let mut out: Vec<Vec<f32>> = xs
        .iter()
        .map(|x| vec![0.0; x.values.as_ref().map_or(0, Vec::len)])
        .collect();
    for (&(i, s, e), fv) in gs.iter().zip(&f) {
        let feat = xs[i].features;
        for r in 0..ev.rows {
            for j in s..e {
                out[i][r * feat + j] = value[r] - fv[r];
            }
        }
    }
    Ok(out)
}

pub(super) async fn shapley(
    ev: &Evaluator<'_>,
    xs: &[Input],
    p: &ExplainParams,
) -> Result<Vec<Vec<f32>>, NodeError> {
    let gs = groups(xs, p.window);
    budget(
        p.samples * (gs.len() + 1),
        "shapley",
        "lower explain_samples or raise explain_window",
    )?;
    let x: Unit = xs.iter().map(|x| x.values.clone()).collect();
    let base: Unit = xs
        .iter()
        .map(|x| x.values.as_ref().map(|v| vec![p.baseline; v.len()]))
        .collect();
    // Seeded: the same explain_seed gives the same orders, so answers are reproducible.
    let mut rng = StdRng::seed_from_u64(p.seed ^ 0x5EED);
    let orders: Vec<Vec<usize>> = (0..p.samples)
        .map(|_| {
            let mut order: Vec<usize> = (0..gs.len()).collect();
            order.shuffle(&mut rng);
            order
        })
        .collect();
    // Unit k is step k % (groups + 1) of order k / (groups + 1): the baseline with the
    // first steps' groups set to the input. Units come in order, so each one is the
    // previous plus one group (a new order starts again from the baseline).
    let chain = gs.len() + 1;
    let mut current = base.clone();
    let next = |k: usize| {
        let (sample, step) = (k / chain, k % chain);
        if step == 0 {
            current.clone_from(&base);
        } else {
            set_group(
                &mut current,
                xs,
                gs[orders[sample][step - 1]],
                Some(&x),
                p.baseline,
                ev.rows,
            );
        }
        current.clone()
    };
    let f = ev.values(p.samples * chain, next).await?;
    let mut per_group = vec![vec![0.0f32; ev.rows]; gs.len()];
    for (k, order) in orders.iter().enumerate() {
        let values = &f[k * chain..(k + 1) * chain];
        for (step, &g) in order.iter().enumerate() {
            for r in 0..ev.rows {
                per_group[g][r] += values[step + 1][r] - values[step][r];
            }
        }
    }
    let mut out: Vec<Vec<f32>> = xs
        .iter()
        .map(|x| vec![0.0; x.values.as_ref().map_or(0, Vec::len)])
        .collect();
    for (gi, &(i, s, e)) in gs.iter().enumerate() {
        let feat = xs[i].features;
        for r in 0..ev.rows {
            for j in s..e {
                out[i][r * feat + j] = per_group[gi][r] / p.samples as f32;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_cover_every_feature_once() {
        let xs = [
            Input {
                values: Some(vec![0.0; 10]),
                features: 5,
            },
            Input {
                values: None,
                features: 3,
            },
        ];
        let g = groups(&xs, 2);
        assert_eq!(g, vec![(0, 0, 2), (0, 2, 4), (0, 4, 5)]);
    }
}
