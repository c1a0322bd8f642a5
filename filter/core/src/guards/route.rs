//! Right after auth: the policy must be here, and the path must be safe and
//! known (SPEC §3: unknown paths pass through or get 404 by config).

use hubgate_wire::UnknownPathAction;

use crate::api::{path_without_query, Endpoint};
use crate::chain::{Callout, Cx, Guard, Step};
use crate::clip::{clip, MAX_PATH};
use crate::reply::LocalReply;

pub struct Route;

impl Guard for Route {
    fn name(&self) -> &'static str {
        "route"
    }

    fn check(&self, cx: &mut Cx<'_>) -> Result<Step, String> {
        let ex = &mut *cx.ex;
        let Some(snapshot) = ex.snapshot.clone() else {
            if ex.snapshot_fetched {
                return Ok(Step::Answer(policy_unavailable()));
            }
            return Ok(Step::Wait(Callout::Snapshot));
        };
        if let Err(reply) = crate::path::check(&ex.path) {
            return Ok(Step::Answer(reply));
        }
        if ex.endpoint == Endpoint::Other && snapshot.settings.unknown_path == UnknownPathAction::NotFound {
            // Never echo the query: it may carry `?key=`.
            let path = path_without_query(&ex.path);
            let path = clip(path, MAX_PATH);
            return Ok(Step::Answer(
                LocalReply::new(404, "not_found", format!("Unknown path `{path}`.")).with_detail("path", path.into()),
            ));
        }
        Ok(Step::Next)
    }
}

fn policy_unavailable() -> LocalReply {
    LocalReply::new(
        503,
        "policy_unavailable",
        "The gateway has not received its policy from the control plane yet. Please retry shortly.",
    )
    .with_header("retry-after", "5")
}
