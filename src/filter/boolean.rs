//! `and`, `or` and `not` over a rule's alternatives: conjunctions of
//! fields (`conjoin`) and clauses (`both`, `either`, `negation`).
use super::model::{Clause, Conjunction, PortRange, Prefix};

/// `a and b`: both constraints at once, or `None` if no packet can meet both.
pub(super) fn conjoin(a: &Conjunction, b: &Conjunction) -> Option<Conjunction> {
    fn same<T: PartialEq + Copy>(x: Option<T>, y: Option<T>) -> Option<Option<T>> {
        match (x, y) {
            (Some(x), Some(y)) if x != y => None,
            (x, y) => Some(x.or(y)),
        }
    }
    fn narrower(x: Option<Prefix>, y: Option<Prefix>) -> Option<Option<Prefix>> {
        match (x, y) {
            (Some(x), Some(y)) if x.within(&y) => Some(Some(x)),
            (Some(x), Some(y)) if y.within(&x) => Some(Some(y)),
            (Some(_), Some(_)) => None,
            (x, y) => Some(x.or(y)),
        }
    }
    fn overlap(x: Option<PortRange>, y: Option<PortRange>) -> Option<Option<PortRange>> {
        match (x, y) {
            (Some(x), Some(y)) => x.intersect(y).map(Some),
            (x, y) => Some(x.or(y)),
        }
    }
    Some(Conjunction {
        l3: same(a.l3, b.l3)?,
        proto: same(a.proto, b.proto)?,
        src: narrower(a.src, b.src)?,
        dst: narrower(a.dst, b.dst)?,
        sport: overlap(a.sport, b.sport)?,
        dport: overlap(a.dport, b.dport)?,
    })
}

/// `protocol and a` for each alternative a consistent with it.
pub(super) fn qualify(protocol: &Conjunction, alternatives: &[Conjunction]) -> Vec<Conjunction> {
    let mut out = Vec::new();
    for c in alternatives.iter().filter_map(|a| conjoin(protocol, a)) {
        if !out.contains(&c) {
            out.push(c);
        }
    }
    out
}

/// `a and b` over clauses: every consistent pair, and whether any pair
/// was not.
pub(super) fn both(a: &[Clause], b: &[Clause]) -> (Vec<Clause>, bool) {
    let (mut out, mut dropped) = (Vec::new(), false);
    for x in a {
        for y in b {
            let Some(must) = conjoin(&x.must, &y.must) else {
                dropped = true;
                continue;
            };
            let mut must_not = x.must_not.clone();
            for n in &y.must_not {
                if !must_not.contains(n) {
                    must_not.push(*n);
                }
            }
            let c = Clause { must, must_not };
            if !out.contains(&c) {
                out.push(c);
            }
        }
    }
    (out, dropped)
}

/// `a or b` over clauses.
pub(super) fn either(mut a: Vec<Clause>, b: Vec<Clause>) -> Vec<Clause> {
    for c in b {
        if !a.contains(&c) {
            a.push(c);
        }
    }
    a
}

/// `not a` over clauses, by De Morgan's laws: `not (C1 or C2)` is `not C1
/// and not C2`, and `not (M and not N1 and not N2)` is `not M or N1 or
/// N2`; `None` if that expands into more than `limit` clauses.
pub(super) fn negation(a: &[Clause], limit: usize) -> Option<Vec<Clause>> {
    let mut out = vec![Clause::default()];
    for c in a {
        let mut not_c: Vec<Clause> = c
            .must_not
            .iter()
            .map(|n| Clause {
                must: *n,
                must_not: Vec::new(),
            })
            .collect();
        if c.must != Conjunction::default() {
            not_c.push(Clause {
                must: Conjunction::default(),
                must_not: vec![c.must],
            });
        }
        out = both(&out, &not_c).0;
        if out.len() > limit {
            return None;
        }
    }
    Some(out)
}

/// Primitives' alternatives as clauses.
pub(super) fn clauses(alternatives: Vec<Conjunction>) -> Vec<Clause> {
    alternatives
        .into_iter()
        .map(|must| Clause {
            must,
            must_not: Vec::new(),
        })
        .collect()
}
