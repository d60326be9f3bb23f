//! Alert delivery: email (SMTP, `lettre`) and JSON webhooks (`ureq`),
//! through a durable outbox with retries and digests.
//!
//! - [`DeliveryFile`] is `[delivery]` of the rule file; [`DeliveryFile::validate`]
//!   makes the runtime [`Delivery`].
//! - [`Outbox::open`] opens the outbox directory (e.g. `<data>/alerts/outbox`);
//!   [`Outbox::enqueue`] queues a newly raised alert durably;
//!   [`Outbox::deliver_due`] sends what is due; [`spawn_deliverer`] runs that
//!   in a thread, woken by every enqueue.
//! - What messages say, and the webhook JSON, is in [`message`]. They carry
//!   no PHI and no tokens: only the alert's group values (app, tenant,
//!   pseudonyms, token ids), counts, times, its detail text, at most ten
//!   evidence event ids and a link to the dashboard.

pub mod config;
mod email;
pub mod message;
pub mod outbox;
mod webhook;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

pub use config::{
    Delivery, DeliveryConfigError, DeliveryFile, Destination, DestinationFile, DigestFile,
    DigestSettings, RetryFile, RetryPolicy, Route, RouteFile, Secret, SmtpFile, SmtpSecurity,
    SmtpSettings, WebhookTarget,
};
pub use message::AlertNotice;
pub use outbox::{notification_id, DeliveryReport, Outbox, OutboxStatus, QueuedMessage};

/// The deliverer looks for due messages at least this often (and at once
/// when woken by an enqueue).
pub const DELIVER_POLL_INTERVAL: Duration = Duration::from_millis(200);

/// The outbox could not be used. Sending failures are not errors: they are
/// retried and reported in [`DeliveryReport`].
#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    #[error("alert outbox: cannot {action} {}: {source}; check that the data directory exists, is writable and has free space", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("SMTP server {server}: cannot set up TLS: {message}; check [delivery.smtp] host and security")]
    SmtpSetup { server: String, message: String },
}

/// Runs [`Outbox::deliver_due`] in a thread named `scopewatch-deliver`:
/// right after every enqueue and otherwise every
/// [`DELIVER_POLL_INTERVAL`], until `stop` is set. To stop promptly, set
/// `stop`, call [`Outbox::wake`] and join the handle (a send in progress
/// finishes first: at most the configured timeout).
pub fn spawn_deliverer(outbox: Outbox, stop: Arc<AtomicBool>) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("scopewatch-deliver".into())
        .spawn(move || {
            while !stop.load(Ordering::Acquire) {
                let report = outbox.deliver_due(SystemTime::now());
                if report.sent + report.failed + report.gave_up > 0 {
                    tracing::debug!(
                        sent = report.sent,
                        failed = report.failed,
                        gave_up = report.gave_up,
                        pending = report.pending,
                        "alert delivery pass"
                    );
                }
                outbox.wait_for_work(DELIVER_POLL_INTERVAL);
            }
        })
}
