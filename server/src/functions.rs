//! Built-in functions served by `functions/call`.

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::store::UserRow;

/// Runs the built-in function `name` for `user`.
pub fn call(name: &str, args: &[Value], user: &UserRow) -> Result<Value, ApiError> {
    match name {
        "sum" => sum(args),
        "echo" => Ok(Value::Array(args.to_vec())),
        "whoami" => Ok(json!({
            "user_id": user.id,
            "custom_data": user.custom_data.clone().unwrap_or(Value::Null),
        })),
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "FunctionNotFound",
            format!("function not found: '{name}'"),
        )),
    }
}

/// Reads a number given as plain JSON or as canonical Extended JSON (`{"$numberInt": "1"}`),
/// which is how realm-core and realm-web send function arguments.
fn number(v: &Value) -> Option<(f64, Option<i64>)> {
    if let Some(f) = v.as_f64() {
        return Some((f, v.as_i64()));
    }
    let obj = v.as_object().filter(|o| o.len() == 1)?;
    let (key, text) = obj.iter().next()?;
    let text = text.as_str()?;
    match key.as_str() {
        "$numberInt" | "$numberLong" => text.parse::<i64>().ok().map(|n| (n as f64, Some(n))),
        "$numberDouble" | "$numberDecimal" => text
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(|f| (f, None)),
        _ => None,
    }
}

/// Adds numbers; stays integral while every argument is an integer and nothing overflows.
fn sum(args: &[Value]) -> Result<Value, ApiError> {
    let mut int: Option<i64> = Some(0);
    let mut float = 0.0f64;
    for (i, a) in args.iter().enumerate() {
        let Some((f, n)) = number(a) else {
            return Err(ApiError::bad_request(format!(
                "sum: argument {i} is not a number"
            )));
        };
        float += f;
        int = match (int, n) {
            (Some(acc), Some(n)) => acc.checked_add(n),
            _ => None,
        };
    }
    Ok(match int {
        Some(n) => Value::from(n),
        None => Value::from(float),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sum_keeps_integers_and_falls_back_to_float() {
        assert_eq!(sum(&[json!(1), json!(2)]).unwrap(), json!(3));
        assert_eq!(sum(&[json!(1), json!(0.5)]).unwrap(), json!(1.5));
        assert_eq!(sum(&[]).unwrap(), json!(0));
        assert!(sum(&[json!("x")]).is_err());
    }

    #[test]
    fn sum_reads_extended_json_numbers() {
        let args = [json!({"$numberInt": "1"}), json!({"$numberLong": "2"})];
        assert_eq!(sum(&args).unwrap(), json!(3));
        let args = [json!({"$numberDouble": "0.5"}), json!(1)];
        assert_eq!(sum(&args).unwrap(), json!(1.5));
        assert!(sum(&[json!({"$numberInt": "x"})]).is_err());
        assert!(sum(&[json!({"$numberDouble": "NaN"})]).is_err());
    }
}
