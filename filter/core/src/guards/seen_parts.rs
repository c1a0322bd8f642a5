//! After the global request filters: the VM remembers the big parts of the
//! body with what the body guards found in them (segments.rs). Reached only
//! when no guard answered; never answers itself.

use crate::chain::{Cx, Guard, Step};

pub struct RememberParts;

impl Guard for RememberParts {
    fn name(&self) -> &'static str {
        "remember_parts"
    }

    fn check(&self, cx: &mut Cx<'_>) -> Result<Step, String> {
        let ex = &*cx.ex;
        // A filter that edited the body left no copy of the parts read.
        if ex.body_changed {
            return Ok(Step::Next);
        }
        if let (Some(parts), Some(body), Ok(mut seen)) =
            (ex.parts.as_ref(), ex.body.as_deref(), cx.vm.seen_parts.try_borrow_mut())
        {
            seen.remember(parts, body);
        }
        Ok(Step::Next)
    }
}
