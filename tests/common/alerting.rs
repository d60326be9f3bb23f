//! Alert email as the tests receive it: a real SMTP server on loopback
//! (aiosmtpd, from the `rules` crate's test support) and a rule file that
//! mails high and critical alerts to it.

use std::path::Path;

use super::{bin, run_ok};

#[path = "../../rules/tests/support/smtp.rs"]
pub mod smtp;

pub use smtp::SmtpSink;

/// An SMTP server on a free loopback port, keeping what it receives in
/// `<dir>/mail`; returns the port and the server.
pub fn start_smtp(dir: &Path) -> (u16, SmtpSink) {
    let port = smtp::free_port();
    let sink = SmtpSink::start(port, &dir.join("mail"));
    (port, sink)
}

/// Writes to `path` the built-in rules (`scopewatch rules defaults`) with
/// delivery of high and critical alerts by email to `secops@example.org`
/// through the SMTP server on 127.0.0.1:`smtp_port` (no TLS), linking to the
/// dashboard at `dashboard_url`.
pub fn write_rules_mailing_secops(path: &Path, dashboard_url: &str, smtp_port: u16) {
    let defaults = run_ok(bin().args(["rules", "defaults"]));
    std::fs::write(
        path,
        format!(
            "{defaults}\n[delivery]\ndashboard_url = \"{dashboard_url}\"\n\
             [delivery.smtp]\nhost = \"127.0.0.1\"\nport = {smtp_port}\nsecurity = \"none\"\n\
             from = \"scopewatch <alerts@example.org>\"\n\
             [[delivery.destination]]\nname = \"secops\"\ntype = \"email\"\nto = [\"secops@example.org\"]\n\
             [[delivery.route]]\nmin_severity = \"high\"\ndestinations = [\"secops\"]\n"
        ),
    )
    .unwrap();
}

/// Messages still waiting in the outbox of the data directory `data` (not
/// yet accepted by their server). The outbox sends at least once: a kill
/// between the server's acceptance and the outbox's note of it sends the
/// message again after the restart (same Message-ID), so a test that
/// counts emails across a kill waits for this to reach 0 first.
pub fn outbox_pending(data: &Path) -> usize {
    std::fs::read_dir(data.join("alerts/outbox/msg"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
                .count()
        })
        .unwrap_or(0)
}
