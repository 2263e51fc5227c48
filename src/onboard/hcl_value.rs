//! HCL expressions as literal values: what `import-tf` can translate. Nothing is evaluated but a
//! plain `var.NAME`, which takes the variable's value; anything else says why it has none.

use std::collections::BTreeMap;

use hcl::expr::{Expression, TraversalOperator};

/// A literal value (after `var.NAME` substitution).
#[derive(Debug, Clone, PartialEq)]
pub enum Lit {
    Str(String),
    Num(f64),
    Bool(bool),
    List(Vec<Lit>),
    Map(Vec<(String, Lit)>),
}

impl Lit {
    pub fn text(&self) -> Option<String> {
        match self {
            Lit::Str(s) => Some(s.clone()),
            Lit::Num(n) => Some(n.to_string()),
            Lit::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }
    pub fn whole(&self) -> Option<u64> {
        match self {
            Lit::Num(n) if n.fract() == 0.0 && *n >= 0.0 => Some(*n as u64),
            Lit::Str(s) => s.trim().parse().ok(),
            _ => None,
        }
    }
    pub fn truthy(&self) -> Option<bool> {
        match self {
            Lit::Bool(b) => Some(*b),
            Lit::Num(n) => Some(*n != 0.0),
            Lit::Str(s) => match s.as_str() {
                "true" | "1" => Some(true),
                "false" | "0" => Some(false),
                _ => None,
            },
            _ => None,
        }
    }
}

/// Variables by name: their tfvars value, else their default.
pub type Vars = BTreeMap<String, Lit>;

/// Why an expression has no literal value.
pub fn literal(expr: &Expression, vars: &Vars) -> Result<Lit, String> {
    match expr {
        Expression::Null => Err("null".into()),
        Expression::Bool(b) => Ok(Lit::Bool(*b)),
        Expression::Number(n) => n
            .as_f64()
            .map(Lit::Num)
            .ok_or_else(|| "a number out of range".into()),
        Expression::String(s) => Ok(Lit::Str(s.clone())),
        Expression::Array(items) => items
            .iter()
            .map(|e| literal(e, vars))
            .collect::<Result<_, _>>()
            .map(Lit::List),
        Expression::Object(object) => object
            .iter()
            .map(|(k, v)| {
                Ok((
                    k.to_string().trim_matches('"').to_string(),
                    literal(v, vars)?,
                ))
            })
            .collect::<Result<_, String>>()
            .map(Lit::Map),
        Expression::Parenthesis(inner) => literal(inner, vars),
        Expression::Traversal(t) => match (&t.expr, t.operators.as_slice()) {
            (Expression::Variable(v), [TraversalOperator::GetAttr(name)])
                if v.as_str() == "var" =>
            {
                vars.get(name.as_str()).cloned().ok_or_else(|| {
                    format!(
                        "var.{} has no value (no default, not in terraform.tfvars)",
                        name.as_str()
                    )
                })
            }
            _ => Err(format!("a reference ({expr}) is not evaluated")),
        },
        Expression::Variable(v) => Err(format!("a bare name ({}) is not evaluated", v.as_str())),
        Expression::TemplateExpr(_) => {
            Err("a string template (\"${...}\") is not evaluated".into())
        }
        Expression::FuncCall(call) => Err(format!(
            "a function call ({}(...)) is not evaluated",
            call.name.name.as_str()
        )),
        Expression::Conditional(_) => Err("a conditional expression is not evaluated".into()),
        Expression::Operation(_) => Err("an operation is not evaluated".into()),
        Expression::ForExpr(_) => Err("a for expression is not evaluated".into()),
        other => Err(format!("an expression ({other}) is not evaluated")),
    }
}
