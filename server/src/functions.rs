//! Built-in functions served by `functions/call`.

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::db::UserRow;
use crate::error::ApiError;

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

/// Adds numbers; stays integral while every argument is an integer and nothing overflows.
fn sum(args: &[Value]) -> Result<Value, ApiError> {
    let mut int: Option<i64> = Some(0);
    let mut float = 0.0f64;
    for (i, a) in args.iter().enumerate() {
        let Some(f) = a.as_f64() else {
            return Err(ApiError::bad_request(format!(
                "sum: argument {i} is not a number"
            )));
        };
        float += f;
        int = match (int, a.as_i64()) {
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
}
