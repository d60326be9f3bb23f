//! Email over SMTP with `lettre` (blocking). One connection per message:
//! alerts are few, and a fresh connection recovers by itself from a server
//! that restarted.

use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{Message, SmtpTransport, Transport};

use super::config::{SmtpSecurity, SmtpSettings};
use super::DeliverError;

/// Sends mail through the configured server.
pub(crate) struct EmailSender {
    transport: SmtpTransport,
    from: Mailbox,
    /// Right-hand side of Message-IDs: the sender's domain.
    id_domain: String,
    /// `host:port`, for messages.
    server: String,
}

impl std::fmt::Debug for EmailSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailSender")
            .field("server", &self.server)
            .field("from", &self.from)
            .finish_non_exhaustive()
    }
}

/// One email to send.
#[derive(Debug)]
pub(crate) struct Email<'a> {
    /// The notification id: the Message-ID is derived from it.
    pub id: &'a str,
    pub to: &'a [Mailbox],
    pub subject: String,
    pub text: String,
    pub html: String,
}

impl EmailSender {
    /// Sets up TLS (no IO: connections are made per message).
    pub(crate) fn new(s: &SmtpSettings) -> Result<EmailSender, DeliverError> {
        let setup_err = |e: lettre::transport::smtp::Error| DeliverError::SmtpSetup {
            server: format!("{}:{}", s.host, s.port),
            message: e.to_string(),
        };
        let builder = match s.security {
            SmtpSecurity::StartTls => SmtpTransport::starttls_relay(&s.host).map_err(setup_err)?,
            SmtpSecurity::Tls => SmtpTransport::relay(&s.host).map_err(setup_err)?,
            SmtpSecurity::None => SmtpTransport::builder_dangerous(&s.host),
        };
        let mut builder = builder.port(s.port).timeout(Some(s.timeout));
        if let Some((user, password)) = &s.credentials {
            builder = builder.credentials(Credentials::new(
                user.clone(),
                password.expose().to_string(),
            ));
        }
        Ok(EmailSender {
            transport: builder.build(),
            from: s.from.clone(),
            id_domain: s.from.email.domain().to_string(),
            server: format!("{}:{}", s.host, s.port),
        })
    }

    pub(crate) fn server(&self) -> &str {
        &self.server
    }

    /// Sends one message; the error text is lettre's (the caller scrubs it).
    pub(crate) fn send(&self, email: &Email<'_>) -> Result<(), String> {
        let mut b = Message::builder()
            .from(self.from.clone())
            .subject(email.subject.clone())
            // Stable per notification: a resend after a crash is a duplicate
            // that mail clients and list servers recognise.
            .message_id(Some(format!("<{}@{}>", email.id, self.id_domain)))
            // RFC 3834: no auto-replies (vacation notices) to alerts.
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("Auto-Submitted"),
                "auto-generated".to_string(),
            ))
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("X-Scopewatch-Notification"),
                email.id.to_string(),
            ));
        for to in email.to {
            b = b.to(to.clone());
        }
        let message = b
            .multipart(MultiPart::alternative_plain_html(
                email.text.clone(),
                email.html.clone(),
            ))
            .map_err(|e| format!("cannot build the message: {e}"))?;
        self.transport
            .send(&message)
            .map(|_| ())
            .map_err(|e| format!("SMTP {}: {e}", self.server))
    }
}
