//! Before everything: a body over `max_body_bytes` is refused with 413, from
//! its declared length as soon as the headers are here.

use crate::chain::{Cx, Guard, Step};
use crate::reply::LocalReply;

pub struct BodySize;

impl Guard for BodySize {
    fn name(&self) -> &'static str {
        "body_size"
    }

    fn check(&self, cx: &mut Cx<'_>) -> Result<Step, String> {
        let max = cx.vm.config.max_body_bytes;
        let declared = cx.ex.content_length.unwrap_or(0);
        let received = cx.ex.body.as_ref().map_or(0, Vec::len);
        if declared > max as u64 || received > max {
            return Ok(Step::Answer(too_large(max)));
        }
        Ok(Step::Next)
    }
}

pub fn too_large(max: usize) -> LocalReply {
    LocalReply::new(413, "request_too_large", format!("Request body is larger than the {max} bytes allowed."))
        .with_detail("max_bytes", max.into())
}
