//! The direct path: a rule set of a few table alternatives and clauses
//! compared one by one (src/bpf/fields.h), cheaper than the tables'
//! lookups for one rule or a few.
use super::model::{Conjunction, Rule, RuleRef};

/// Comparisons a rule set may take and still be matched directly
/// (`NP_MAX_DIRECT`): one each per packet, where the tables cost a lookup
/// per field and per shape.
pub const MAX_DIRECT: usize = 8;

/// One comparison of the direct path (`struct np_direct`): the frame must
/// match `conjunction` and not `unless`, or with `negate` must not match
/// `conjunction`. A clause is one or more in a row, the last (`end`)
/// giving its rule; `held` marks those of a rule of clauses, whose program
/// runs instead on a frame cut short.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirectTest {
    pub rule: RuleRef,
    pub conjunction: Conjunction,
    /// A conjunction of l3 and protocol only (`and not tcp`), compared in
    /// the same step as `conjunction`, where a test of its own would cost
    /// a step more.
    pub unless: Option<Conjunction>,
    pub negate: bool,
    pub end: bool,
    pub held: bool,
}

/// The comparisons the BPF program makes one by one, in rule order: of
/// every table alternative and every clause, if that takes at most
/// [`MAX_DIRECT`]; else none, and the tables and programs match.
pub(super) fn direct_tests(rules: &[Rule]) -> Vec<DirectTest> {
    let mut tests = Vec::new();
    for (i, r) in rules.iter().enumerate() {
        let rule = RuleRef {
            rule: i as u32,
            action: r.action,
        };
        let test = |conjunction, negate, end, held| DirectTest {
            rule,
            conjunction,
            unless: None,
            negate,
            end,
            held,
        };
        if r.program.is_none() {
            tests.extend(r.alternatives.iter().map(|c| test(*c, false, true, false)));
        }
        for clause in &r.clauses {
            let must = clause.must != Conjunction::default() || clause.must_not.is_empty();
            let mut must_not = clause.must_not.clone();
            let start = tests.len();
            if must {
                let unless = must_not
                    .iter()
                    .position(reads_only_l3_and_protocol)
                    .map(|i| must_not.remove(i));
                tests.push(DirectTest {
                    unless,
                    ..test(clause.must, false, false, true)
                });
            }
            tests.extend(must_not.iter().map(|c| test(*c, true, false, true)));
            if let Some(last) = tests[start..].last_mut() {
                last.end = true;
            }
        }
        if tests.len() > MAX_DIRECT {
            return Vec::new();
        }
    }
    tests
}

fn reads_only_l3_and_protocol(c: &Conjunction) -> bool {
    c.src.is_none() && c.dst.is_none() && c.sport.is_none() && c.dport.is_none()
}
