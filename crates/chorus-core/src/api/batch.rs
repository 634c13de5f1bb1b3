//! `batch`: several commands in one call.

use futures_util::future::join_all;

use super::{unknown_entry, ApiError, BatchRequest, BatchResult, Request, Response, ServerApi};

/// Runs every command — strictly in order, or all at once on the caller's task with
/// `parallel` (the order of effects is then unspecified, the order of replies is not). Each
/// command is counted as its own method; an entry naming no method, or a nested `batch`,
/// answers 104.
pub(super) async fn batch(api: &ServerApi, req: BatchRequest) -> Result<BatchResult, ApiError> {
    let run = |command: Option<Request>| async move {
        match command {
            Some(command) => api.call_one(command).await,
            None => Err(unknown_entry()),
        }
    };
    let replies: Vec<Result<Response, ApiError>> = if req.parallel {
        join_all(req.commands.into_iter().map(run)).await
    } else {
        let mut replies = Vec::with_capacity(req.commands.len());
        for command in req.commands {
            replies.push(run(command).await);
        }
        replies
    };
    Ok(BatchResult { replies })
}
