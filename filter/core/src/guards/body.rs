//! The guards from here on read the body: wait for it, and refuse one that
//! is not the JSON object of its API (400 with the parse position).

use crate::chain::{Cx, Guard, Step};

pub struct Body;

impl Guard for Body {
    fn name(&self) -> &'static str {
        "body"
    }

    fn check(&self, cx: &mut Cx<'_>) -> Result<Step, String> {
        match cx.ex.parse_body(cx.vm) {
            Ok(true) => Ok(Step::Next),
            Ok(false) => Ok(Step::NeedBody),
            Err(reply) => Ok(Step::Answer(reply)),
        }
    }
}
