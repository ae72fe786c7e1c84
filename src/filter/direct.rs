//! The direct path: a rule set of a few table alternatives and clauses
//! compared one by one (src/bpf/fields.h), cheaper than the tables'
//! lookups for one rule or a few.
use super::model::{Conjunction, PortRange, Rule, RuleRef, SHAPE_DPORT, SHAPE_SPORT};

/// Comparisons a rule set may take and still be matched directly
/// (`NP_MAX_DIRECT`): one each per packet, where the tables cost a lookup
/// per field and per shape.
pub const MAX_DIRECT: usize = 8;

/// One comparison of the direct path (`struct np_direct`): the frame must
/// match `conjunction`, not `unless`, and have no port in `except_sport`
/// or `except_dport`, or with `negate` must not match `conjunction`. A
/// clause is one or more in a row, the last (`end`) giving its rule;
/// `held` marks those of a rule of clauses, whose program runs instead on
/// a frame cut short.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirectTest {
    pub rule: RuleRef,
    pub conjunction: Conjunction,
    /// A conjunction of l3 and protocol only (`and not tcp`), compared in
    /// the same step as `conjunction`, where a test of its own would cost
    /// a step more.
    pub unless: Option<Conjunction>,
    /// A clause's `and not src port N` (a range without port 0, on a
    /// port `conjunction` leaves free), compared as the range around it.
    pub except_sport: Option<PortRange>,
    pub except_dport: Option<PortRange>,
    pub negate: bool,
    pub end: bool,
    pub held: bool,
}

impl DirectTest {
    /// The fields the program must read for it (`NP_SHAPE_*` bits).
    pub fn fields(&self) -> u8 {
        let except = [
            (self.except_sport, SHAPE_SPORT),
            (self.except_dport, SHAPE_DPORT),
        ];
        except
            .iter()
            .filter(|(range, _)| range.is_some())
            .fold(self.conjunction.shape(), |acc, (_, bit)| acc | bit)
    }
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
            except_sport: None,
            except_dport: None,
            negate,
            end,
            held,
        };
        if r.program.is_none() {
            tests.extend(r.alternatives.iter().map(|c| test(*c, false, true, false)));
        }
        for clause in &r.clauses {
            // The negated conjunctions that fit in the step of the
            // positive part, folded into it; the others a step each.
            let mut must_not = clause.must_not.clone();
            let mut take = |fits: &dyn Fn(&Conjunction) -> bool| {
                let i = must_not.iter().position(fits)?;
                Some(must_not.remove(i))
            };
            let mut except = |source: bool, free: bool| {
                let taken = free
                    .then(|| take(&|c| is_port_range(c, source)))
                    .flatten()?;
                if source {
                    taken.sport
                } else {
                    taken.dport
                }
            };
            let positive = DirectTest {
                except_sport: except(true, clause.must.sport.is_none()),
                except_dport: except(false, clause.must.dport.is_none()),
                unless: take(&reads_only_l3_and_protocol),
                ..test(clause.must, false, false, true)
            };
            let folded = positive.unless.is_some()
                || positive.except_sport.is_some()
                || positive.except_dport.is_some();
            let start = tests.len();
            if clause.must != Conjunction::default() || folded || must_not.is_empty() {
                tests.push(positive);
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

/// Whether `c` is one range of the source port (`source`) or of the
/// destination port, and nothing else, without port 0: a frame without
/// ports reads as port 0, and must fall outside the range around it.
fn is_port_range(c: &Conjunction, source: bool) -> bool {
    let (range, other) = if source {
        (c.sport, c.dport)
    } else {
        (c.dport, c.sport)
    };
    let rest = Conjunction {
        sport: None,
        dport: None,
        ..*c
    };
    rest == Conjunction::default() && other.is_none() && range.is_some_and(|r| r.lo > 0)
}

#[cfg(test)]
mod tests {
    use super::super::compile::Compiled;
    use super::super::model::PROTO_TCP;
    use super::super::tests::drop_rule;
    use super::*;

    /// (except_sport, except_dport, unless, negate, end) of each step.
    type Step = (
        Option<PortRange>,
        Option<PortRange>,
        Option<Conjunction>,
        bool,
        bool,
    );

    fn steps(text: &str) -> Vec<Step> {
        Compiled::compile(&[drop_rule(text)])
            .unwrap()
            .direct
            .iter()
            .inspect(|t| assert!(t.held, "{text}: a rule of clauses is held"))
            .map(|t| (t.except_sport, t.except_dport, t.unless, t.negate, t.end))
            .collect()
    }

    #[test]
    fn negated_ports_and_protocols_fold_into_the_positive_step() {
        if !super::super::pcap::available() {
            return;
        }
        let port = |n: u16| Some(PortRange { lo: n, hi: n });
        let tcp = Conjunction {
            proto: Some(PROTO_TCP),
            ..Default::default()
        };
        // Both negated ports in one step, the ranges around port 22.
        assert_eq!(
            steps("not port 22"),
            [(port(22), port(22), None, false, true)]
        );
        let compiled = Compiled::compile(&[drop_rule("not port 22")]).unwrap();
        assert_eq!(compiled.direct[0].conjunction, Conjunction::default());
        assert_eq!(compiled.direct[0].fields(), SHAPE_SPORT | SHAPE_DPORT);
        assert_eq!(
            steps("src net 10.0.0.0/8 and not tcp"),
            [(None, None, Some(tcp), false, true)]
        );
        // Port 0 is what a frame without ports reads as: a step of its own.
        assert_eq!(steps("not src port 0"), [(None, None, None, true, true)]);
        // One range per port field; the second a step of its own.
        assert_eq!(
            steps("not port 22 and not dst port 80"),
            [
                (port(22), port(22), None, false, false),
                (None, None, None, true, true)
            ]
        );
    }
}
