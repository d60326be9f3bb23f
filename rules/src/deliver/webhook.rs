//! Webhooks: a JSON POST with a blocking `ureq` agent. 2xx is delivered;
//! any other answer, a redirect included, is a failure that is retried.

use std::io::Read;

use super::config::WebhookTarget;

/// Shared agent (keeps connections to the same host alive).
pub(crate) struct WebhookSender {
    agent: ureq::Agent,
}

impl std::fmt::Debug for WebhookSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSender").finish_non_exhaustive()
    }
}

/// At most this much of an error answer's body goes into the error text.
const MAX_ERROR_BODY_BYTES: u64 = 300;

impl WebhookSender {
    pub(crate) fn new() -> WebhookSender {
        let agent = ureq::Agent::config_builder()
            // Statuses are judged here, not turned into errors by ureq.
            .http_status_as_error(false)
            // A redirected POST would change method or target: fail instead.
            .max_redirects(0)
            .user_agent(concat!("scopewatch/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        WebhookSender { agent }
    }

    /// POSTs `body`; the error text names the origin only, never the URL.
    pub(crate) fn send(
        &self,
        target: &WebhookTarget,
        idempotency_key: &str,
        body: &[u8],
    ) -> Result<(), String> {
        let mut req = self
            .agent
            .post(target.url.expose())
            .header("Content-Type", "application/json")
            .header("Idempotency-Key", idempotency_key);
        for (name, value) in &target.headers {
            req = req.header(name.as_str(), value.expose());
        }
        let result = req
            .config()
            .timeout_global(Some(target.timeout))
            .build()
            .send(body);
        let mut resp = match result {
            Ok(r) => r,
            Err(e) => return Err(format!("POST {}: {e}", target.origin)),
        };
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let mut text = String::new();
        let _ = resp
            .body_mut()
            .as_reader()
            .take(MAX_ERROR_BODY_BYTES)
            .read_to_string(&mut text);
        let text: String = text
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let text = text.trim();
        Err(if text.is_empty() {
            format!("POST {}: answered {status}", target.origin)
        } else {
            format!("POST {}: answered {status}: {text}", target.origin)
        })
    }
}
