//! Per-call deadlines: a caller stops waiting after its own deadline with `Timeout`,
//! while the load it was waiting for goes on for every other caller.

use std::future::Future;
use std::time::Duration;

use crate::error::{Error, ErrorKind, Result};

/// `call`, or [`ErrorKind::Timeout`] if it has not finished within `limit`. Dropping a
/// meshcache call is cancel-safe: only this caller stops waiting, and a load it started
/// completes and is cached for the others. `None` waits as long as the call takes.
///
/// # Errors
///
/// The call's own, or `Timeout`.
pub async fn within<T>(limit: Option<Duration>, call: impl Future<Output = Result<T>>) -> Result<T> {
    match limit {
        None => call.await,
        Some(limit) => tokio::time::timeout(limit, call).await.unwrap_or_else(|_| {
            Err(Error::new(
                ErrorKind::Timeout,
                format!("no answer within the caller's deadline of {limit:?}"),
            ))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_late_call_is_a_timeout_and_a_quick_one_is_its_answer() {
        let late = within(Some(Duration::from_secs(1)), async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok(1)
        });
        assert_eq!(late.await.unwrap_err().kind(), ErrorKind::Timeout);
        assert_eq!(
            within(Some(Duration::from_secs(1)), async { Ok(2) })
                .await
                .unwrap(),
            2
        );
        assert_eq!(within(None, async { Ok(3) }).await.unwrap(), 3);
    }
}
