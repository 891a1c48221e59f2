//! `format_query`'s formatter: the same text as `promql-parser`'s `prettify`, in time linear
//! in its output. That one renders a node's whole subtree to decide whether to split it, at
//! every node, and copies each child's text into its parent's: cubic on a deep query (two
//! seconds at depth 1,000, minutes at 4,000). Here each node's one-line length is computed
//! once, bottom-up, and the output is written into one buffer.

use std::collections::HashMap;
use std::fmt::Write;

use promql_parser::parser::{AggregateExpr, BinaryExpr, Expr, NumberLiteral, SubqueryExpr};

/// Longest line `prettify` leaves whole.
const MAX_LINE: usize = 100;
const INDENT: &str = "  ";

/// `expr` as `promql-parser`'s `Expr::prettify` writes it. Recurses once per level: call it
/// on a query thread (see `guard`).
pub fn prettify(expr: &Expr) -> String {
    let mut p = Pretty {
        lens: HashMap::new(),
        out: String::new(),
    };
    p.measure(expr);
    p.write(expr, 0, false);
    p.out
}

struct Pretty {
    /// One-line (`Display`) length of each node, by address.
    lens: HashMap<*const Expr, usize>,
    out: String,
}

/// A one-character stand-in for a child, to render a node's own text without its subtree.
fn zero() -> Box<Expr> {
    Box::new(Expr::NumberLiteral(NumberLiteral { val: 0.0 }))
}

/// The operator with its modifiers, as a binary expression prints it between its sides.
fn binary_op(b: &BinaryExpr) -> String {
    let shallow = Expr::Binary(BinaryExpr {
        op: b.op,
        lhs: zero(),
        rhs: zero(),
        modifier: b.modifier.clone(),
    })
    .to_string();
    // "0 <op> 0"
    shallow[2..shallow.len() - 2].to_string()
}

/// An aggregation's text before its opening parenthesis (`sum by (job) `).
fn aggregate_op(a: &AggregateExpr) -> String {
    let shallow = Expr::Aggregate(AggregateExpr {
        op: a.op,
        expr: zero(),
        param: None,
        modifier: a.modifier.clone(),
    })
    .to_string();
    // "<op>(0)"
    shallow[..shallow.len() - 3].to_string()
}

/// A subquery's text after its expression (`[5m:1m] offset 1h`).
fn subquery_suffix(s: &SubqueryExpr) -> String {
    let shallow = Expr::Subquery(SubqueryExpr {
        expr: zero(),
        offset: s.offset.clone(),
        at: s.at.clone(),
        range: s.range,
        step: s.step,
    })
    .to_string();
    // "0<suffix>"
    shallow[1..].to_string()
}

impl Pretty {
    fn len(&self, e: &Expr) -> usize {
        self.lens.get(&(e as *const Expr)).copied().unwrap_or(0)
    }

    /// Records the one-line length of `e` and of every node under it.
    fn measure(&mut self, e: &Expr) -> usize {
        let n = match e {
            Expr::Aggregate(a) => {
                let param = match &a.param {
                    Some(p) => self.measure(p) + 2,
                    None => 0,
                };
                aggregate_op(a).len() + 1 + param + self.measure(&a.expr) + 1
            }
            Expr::Unary(u) => 1 + self.measure(&u.expr),
            Expr::Binary(b) => self.measure(&b.lhs) + 2 + binary_op(b).len() + self.measure(&b.rhs),
            Expr::Paren(p) => 2 + self.measure(&p.expr),
            Expr::Subquery(s) => self.measure(&s.expr) + subquery_suffix(s).len(),
            Expr::Call(c) => {
                let mut n = c.func.name.len() + 2;
                for (i, a) in c.args.args.iter().enumerate() {
                    n += self.measure(a) + if i > 0 { 2 } else { 0 };
                }
                n
            }
            Expr::NumberLiteral(_)
            | Expr::StringLiteral(_)
            | Expr::VectorSelector(_)
            | Expr::MatrixSelector(_)
            | Expr::Extension(_) => e.to_string().len(),
        };
        self.lens.insert(e as *const Expr, n);
        n
    }

    fn indent(&mut self, level: usize, trimmed: bool) {
        if !trimmed {
            for _ in 0..level {
                self.out.push_str(INDENT);
            }
        }
    }

    /// Writes `e` at `level`; `trimmed` leaves out its leading indentation (what a unary
    /// minus does to its operand's text).
    fn write(&mut self, e: &Expr, level: usize, trimmed: bool) {
        match e {
            Expr::Unary(u) => {
                self.indent(level, trimmed);
                self.out.push('-');
                self.write(&u.expr, level, true);
            }
            Expr::Subquery(s) => {
                self.write(&s.expr, level, trimmed);
                self.out.push_str(&subquery_suffix(s));
            }
            Expr::Extension(x) => {
                let _ = write!(self.out, "{x:?}");
            }
            Expr::NumberLiteral(_)
            | Expr::StringLiteral(_)
            | Expr::VectorSelector(_)
            | Expr::MatrixSelector(_) => {
                self.indent(level, trimmed);
                let _ = write!(self.out, "{e}");
            }
            _ if self.len(e) <= MAX_LINE => {
                self.indent(level, trimmed);
                let _ = write!(self.out, "{e}");
            }
            Expr::Aggregate(a) => {
                self.indent(level, trimmed);
                self.out.push_str(&aggregate_op(a));
                self.out.push_str("(\n");
                if let Some(p) = &a.param {
                    self.write(p, level + 1, false);
                    self.out.push_str(",\n");
                }
                self.write(&a.expr, level + 1, false);
                self.out.push('\n');
                self.indent(level, false);
                self.out.push(')');
            }
            Expr::Binary(b) => {
                self.write(&b.lhs, level + 1, trimmed);
                self.out.push('\n');
                self.indent(level, false);
                self.out.push_str(&binary_op(b));
                self.out.push('\n');
                self.write(&b.rhs, level + 1, false);
            }
            Expr::Paren(p) => {
                self.indent(level, trimmed);
                self.out.push_str("(\n");
                self.write(&p.expr, level + 1, false);
                self.out.push('\n');
                self.indent(level, false);
                self.out.push(')');
            }
            Expr::Call(c) => {
                self.indent(level, trimmed);
                self.out.push_str(c.func.name);
                self.out.push_str("(\n");
                for (i, a) in c.args.args.iter().enumerate() {
                    if i > 0 {
                        self.out.push_str(",\n");
                    }
                    self.write(a, level + 1, false);
                }
                self.out.push('\n');
                self.indent(level, false);
                self.out.push(')');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Queries that split in every way the formatter knows, and some that do not.
    const QUERIES: &[&str] = &[
        "1",
        "up",
        "-up",
        "-(-(1))",
        r#"sum(rate(http_requests_total{job="api"}[5m])) by (code)"#,
        r#"sum without (instance, pod) (rate(http_requests_total{job="api-server", handler=~"/api/v1/.*", code!~"5.."}[5m] offset 1h)) / ignoring (code) group_left (team) sum by (job) (rate(http_requests_total{job="api-server"}[5m]))"#,
        r#"histogram_quantile(0.99, sum by (le, job) (rate(http_request_duration_seconds_bucket{job="api-server", handler="/api/v1/query_range"}[5m])))"#,
        r#"-(sum(rate(http_requests_total{job="api-server", handler=~"/api/v1/.*", code!~"5.."}[5m])) + sum(rate(node_cpu_seconds_total{mode="idle"}[5m])))"#,
        r#"max_over_time((rate(http_requests_total{job="api-server", handler=~"/api/v1/.*"}[5m]) * on (job) group_left () up{job="api-server"})[1h:5m] @ 1700000000 offset 10m)"#,
        r#"topk(5, count_values("value", node_cpu_seconds_total{mode="idle", instance=~"node-exporter-.*", cpu="0"}) or vector(0))"#,
        r#"label_replace(up{job="api-server", instance="very-long-instance-name:9100"}, "host", "$1", "instance", "(.*):.*") > bool 0"#,
        r#"(a_very_long_metric_name_that_goes_on_and_on_total + another_very_long_metric_name_total) * -(third_very_long_metric_name_total - fourth_very_long_metric_name_total)"#,
        r#"quantile_over_time(0.9, rate(a_fairly_long_metric_name_for_testing_total{instance="host-one.example.com"}[5m])[30m:1m])"#,
    ];

    #[test]
    fn writes_what_promql_parser_writes() {
        for q in QUERIES {
            let e = promql_parser::parser::parse(q).unwrap();
            assert_eq!(prettify(&e), e.prettify(), "{q}");
        }
    }

    #[test]
    fn deep_chains_as_promql_parser_writes_them() {
        let chain = format!("x{}", " + x".repeat(150));
        let neg = format!("{}1{}", "-(".repeat(60), ")".repeat(60));
        let calls = format!("{}vector(1){}", "abs(".repeat(60), ")".repeat(60));
        for q in [chain, neg, calls] {
            let e = promql_parser::parser::parse(&q).unwrap();
            assert_eq!(prettify(&e), e.prettify(), "{q}");
        }
    }
}
