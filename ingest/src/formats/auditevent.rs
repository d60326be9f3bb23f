//! The `fhir-auditevent` format: FHIR `AuditEvent` resources (R4 or R5) as a
//! FHIR server or an IHE BALP (Basic Audit Log Patterns) audit repository
//! writes them.
//!
//! A record is one JSON value: an `AuditEvent`, or a `Bundle` whose
//! `entry[].resource` are AuditEvents (one event per AuditEvent entry; entries
//! of other types, such as resources a search `_include`d, and entries
//! without a resource are skipped). It may be one NDJSON line (bulk export)
//! or a whole pretty-printed file. Any other `resourceType` is an error that
//! names it. The `n`th event of a record gets [`LineContext::event_id_for`]`(n)`.
//! A bad AuditEvent inside a Bundle fails the whole record (its fields are
//! named `entry[i].resource.<field>`), as every adapter appends nothing on
//! error.
//!
//! What becomes of an AuditEvent:
//!
//! - **access** when it is a RESTful operation: type (R4) / category (R5)
//!   `rest` of `http://terminology.hl7.org/CodeSystem/audit-event-type`, or a
//!   subtype (R4) / code (R5) from `http://hl7.org/fhir/restful-interaction`.
//!   The request comes from the first entity `query` (base64) that decodes to
//!   an HTTP request (`GET /fhir/Observation?patient=1 HTTP/1.1`, headers and
//!   a form body may follow; a POST `_search` body is taken as its query), a
//!   URL or path, or a bare query string (then prefixed with the target
//!   entity's resource type). Without one, the request is synthesised from
//!   the interaction and the target entity's `what` reference (`read` of
//!   `Patient/1` -> `GET Patient/1`, `vread` -> `GET Patient/1/_history/2`,
//!   `create` -> `POST Patient`, `search` -> `GET Observation`, `batch` /
//!   `transaction` -> `POST /`, `capabilities` -> `GET metadata`; `operation`,
//!   system and compartment searches cannot be synthesised). Both go through
//!   [`enrich_access`]; a logged request outside the source's FHIR base is
//!   classified again against an automatic base (the event says it was a FHIR
//!   call), and a synthesised one, being base-relative, always is. The
//!   interaction falls back to the event's own code when the request cannot
//!   be classified.
//! - **auth** when it is a user authentication (DICOM `110114`), a login
//!   (`110122` or `login`: kind `authorize`, or `token` when a token id is
//!   recorded), a logout (`110123` or `logout`), or an IHE IUA token event
//!   (`ITI-71` Get Access Token: `token`, or `refresh` / `client_credentials`
//!   / `token_exchange` by the request's `grant_type`; `ITI-102`:
//!   `introspect`).
//! - **nothing** otherwise (`Ok` with no event): break-glass, security
//!   alerts, application start/stop, exports and other administrative events
//!   say nothing about an app's scopes or its FHIR calls.
//!
//! Fields, for both FHIR versions:
//!
//! - `ts`: R5 `occurredDateTime` (or `occurredPeriod.start`), else `recorded`
//!   (R4 and R5), which is required.
//! - outcome: R4 `outcome` code and `outcomeDesc`; R5 `outcome.code` and
//!   `outcome.detail`. Codes `0` (and FHIR issue severities `information`,
//!   `warning`) are a success; `4`, `8`, `12` (`error`, `fatal`) a failure.
//!   `status` is an HTTP status the detail states (a `403` code, or text such
//!   as `HTTP 403 Forbidden`). A failed call is `denied` when the status is
//!   401 or 403 or the detail says forbidden, unauthorized or denied, else
//!   `error`; a call with no outcome is judged by its status, else allowed.
//!   A failed auth event's `error` is the detail (or the code's name),
//!   scrubbed with [`Pseudonymiser::redact_reason`](crate::privacy::Pseudonymiser::redact_reason).
//! - `client_id`: `who.identifier.value` of the agent typed DICOM `110150`
//!   Application (BALP's client) or `application`, else of an agent that is
//!   not the requestor and not the server (`110152`, `AuthzOauthService`).
//! - `user`: the requestor agent's `who.identifier.value`, else its
//!   `who.reference`, pseudonymised (none when the requestor is the client).
//! - `token_id`: a bearer token in the logged request's `Authorization`
//!   header (its id and claims, as for gateway lines), else the token `jti`
//!   BALP records in the user's or the client's `agent.policy`
//!   (`urn:ietf:params:oauth:jti:` prefix or a bare value; other policy URIs
//!   are not tokens), else (auth) the `what.identifier.value` of a token
//!   entity (object role `13` or type `UserOauthAgent`). Access
//!   `expires_at` and `token_tenant` come only from such a logged bearer
//!   JWT (its `exp`, and its `iss` as a tenant name); otherwise they are
//!   null (a `jti` alone tells neither).
//! - `ip`: the network address (R4 `network.address`, R5 `networkString` /
//!   `networkUri`) of the client, else the requestor, else another non-server
//!   agent, when it is an IP address (machine names are not kept in `ip`).
//! - `patient`: the entity whose `what` references `Patient/..`, else the R5
//!   `patient` reference, else the patient the request names; pseudonymised.
//!   Auth events also take `encounter` the same way.
//! - auth `scopes_requested`, `grant_type` (and `client_id` when no agent
//!   gives one) from the logged token request's parameters; `scopes_granted`
//!   from a token entity's `scope` detail. Nothing else of the request is kept.
//! - `tenant`: the source's tenant. AuditEvents carry no tenant of their own,
//!   so of the `tenant_from` settings only `fixed` means something here; a
//!   source without a tenant gives an error.
//! - `user_agent` (and `app_version`, with a `user_agent:` pattern) from the
//!   logged request's `User-Agent` header.
//!
//! Nothing raw is kept: patient, user and encounter ids are pseudonymised,
//! tokens reduced to ids, and the decoded request reaches the event only
//! through [`enrich_access`], which redacts its path.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use serde_json::Value;

use scopewatch_model::events::{
    AccessEvent, AccessOutcome, AuthEvent, AuthKind, AuthOutcome, Timestamp,
};
use scopewatch_model::request::{parse_query, FhirBase, Interaction};

use crate::adapter::{
    enrich_access, json_kind_at, line_text, AccessEnrichment, Adapter, LineContext, ParseError,
    Parsed, ValueHint,
};
use crate::privacy::{jti_id, IdKind, TokenInfo};

/// The FHIR AuditEvent adapter (`format = "fhir-auditevent"`).
#[derive(Debug, Clone, Default)]
pub struct AuditEvent;

impl AuditEvent {
    pub const NAME: &'static str = "fhir-auditevent";
}

const AUDIT_EVENT_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-event-type";
const RESTFUL_INTERACTION: &str = "http://hl7.org/fhir/restful-interaction";
const DCM: &str = "http://dicom.nema.org/resources/ontology/DCM";
const IHE_EVENT_TYPE: &str = "urn:ihe:event-type-code";
const OBJECT_ROLE: &str = "http://terminology.hl7.org/CodeSystem/object-role";
/// BALP: "jti SHALL be prefixed with urn:ietf:params:oauth:jti:" (RFC 3553).
const JTI_URN: &str = "urn:ietf:params:oauth:jti:";

impl Adapter for AuditEvent {
    fn name(&self) -> &'static str {
        AuditEvent::NAME
    }

    fn parse_line(
        &self,
        line: &[u8],
        ctx: &LineContext<'_>,
        out: &mut Vec<Parsed>,
    ) -> Result<(), ParseError> {
        let text = line_text(line)?;
        let text = text.trim_start_matches('\u{feff}').trim();
        if text.is_empty() {
            return Ok(());
        }
        if !text.starts_with('{') {
            return Err(ParseError::NotAnObject(json_kind_at(text)));
        }
        let value: Value =
            serde_json::from_str(text).map_err(|e| ParseError::from_json(&e, text))?;
        let mut events = Vec::new();
        match resource_type(&value)? {
            "AuditEvent" => {
                if let Some(e) = audit_event(&value, ctx, ctx.event_id_for(0))? {
                    events.push(e);
                }
            }
            "Bundle" => {
                let entries = match value.get("entry") {
                    None | Some(Value::Null) => &[][..],
                    Some(Value::Array(a)) => a.as_slice(),
                    Some(other) => return Err(wrong_type("entry", "an array", other)),
                };
                for (i, entry) in entries.iter().enumerate() {
                    let Some(resource) = entry.get("resource") else {
                        continue;
                    };
                    if resource.get("resourceType").and_then(Value::as_str) != Some("AuditEvent") {
                        continue;
                    }
                    let id = ctx.event_id_for(events.len());
                    if let Some(e) = audit_event(resource, ctx, id).map_err(|e| in_entry(i, e))? {
                        events.push(e);
                    }
                }
            }
            other => {
                return Err(ParseError::Format(Cow::Owned(format!(
                    "resourceType {}: expected `AuditEvent` or a `Bundle` of AuditEvents",
                    ValueHint::of(other)
                ))))
            }
        }
        out.extend(events);
        Ok(())
    }
}

/// One AuditEvent: an access or auth event, or `None` for the kinds this
/// format skips.
fn audit_event(
    ev: &Value,
    ctx: &LineContext<'_>,
    event_id: String,
) -> Result<Option<Parsed>, ParseError> {
    if !ev.is_object() {
        return Err(ParseError::NotAnObject(kind_of(ev)));
    }
    let ts = event_time(ev)?;
    let agents = agents(ev)?;
    let entities = entities(ev)?;
    let outcome = Outcome::read(ev)?;

    let mut types = Vec::new();
    push_codings(ev.get("type"), &mut types);
    push_codings(ev.get("category"), &mut types);
    let mut subs = Vec::new();
    push_codings(ev.get("subtype"), &mut subs);
    push_codings(ev.get("code"), &mut subs);

    let rest_code = subs
        .iter()
        .filter(|c| c.system.is_none_or(|s| s == RESTFUL_INTERACTION))
        .find_map(|c| c.code.filter(|code| Interaction::parse(code).is_some()));
    let is_rest = rest_code.is_some() || types.iter().any(|c| c.is(AUDIT_EVENT_TYPE, "rest"));
    let auth_kind = if is_rest {
        None
    } else {
        match auth_kind(&types, &subs) {
            Some(k) => Some(k),
            // Break-glass, security alerts, application activity, exports:
            // nothing about an app's grants or its FHIR calls.
            None => return Ok(None),
        }
    };

    let facts = Facts::gather(ev, &agents, &entities, ctx);
    let common = Common {
        event_id,
        ts,
        tenant: tenant(ctx)?,
    };
    Ok(Some(match auth_kind {
        None => Parsed::Access(access(ev, common, &facts, &outcome, rest_code, ctx)),
        Some(k) => Parsed::Auth(auth(common, k, &facts, &entities, &outcome, ctx)),
    }))
}

/// The auth kind a non-REST event is, if it is one.
fn auth_kind(types: &[Coding<'_>], subs: &[Coding<'_>]) -> Option<AuthKindHint> {
    let named =
        |c: &Coding<'_>, word: &str| c.code.is_some_and(|s| s.trim().eq_ignore_ascii_case(word));
    let codes = || types.iter().chain(subs);
    if codes().any(|c| c.is(DCM, "110123") || named(c, "logout")) {
        Some(AuthKindHint::Logout)
    } else if codes().any(|c| c.is(DCM, "110122") || named(c, "login")) {
        Some(AuthKindHint::Login)
    } else if codes().any(|c| c.is(IHE_EVENT_TYPE, "ITI-71")) {
        Some(AuthKindHint::Token)
    } else if codes().any(|c| c.is(IHE_EVENT_TYPE, "ITI-102")) {
        Some(AuthKindHint::Introspect)
    } else if types.iter().any(|c| c.is(DCM, "110114")) {
        // User Authentication with no more specific subtype.
        Some(AuthKindHint::Login)
    } else {
        None
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AuthKindHint {
    Login,
    Logout,
    Token,
    Introspect,
}

/// The columns both streams share.
struct Common {
    event_id: String,
    ts: Timestamp,
    tenant: String,
}

/// AuditEvents carry no tenant: the source's (`tenant_from = "fixed"` is the
/// only setting that means something for this format).
fn tenant(ctx: &LineContext<'_>) -> Result<String, ParseError> {
    ctx.tenant
        .map(str::to_string)
        .ok_or(ParseError::MissingField(Cow::Borrowed("tenant")))
}

/// What the agents and entities tell, reduced (ids already pseudonymised).
struct Facts<'a> {
    client_id: Option<String>,
    user: Option<String>,
    /// A token id from an agent's `policy`.
    policy_token_id: Option<String>,
    ip: Option<String>,
    patient: Option<String>,
    encounter: Option<String>,
    /// The resource the event acts on, for a synthesised request.
    target: Option<Target<'a>>,
    /// The first entity `query` that decodes, parsed.
    request: Option<Request>,
}

#[derive(Clone, Copy)]
struct Target<'a> {
    reference: Ref<'a>,
    /// The only reference is the event's patient (its role or type says so):
    /// it tells which patient, not which resource type was searched.
    patient_only: bool,
}

impl<'a> Facts<'a> {
    fn gather(
        ev: &'a Value,
        agents: &[Agent<'a>],
        entities: &[Entity<'a>],
        ctx: &LineContext<'_>,
    ) -> Facts<'a> {
        let privacy = ctx.privacy;
        let client = agents.iter().position(Agent::is_application).or_else(|| {
            agents
                .iter()
                .position(|a| !a.requestor && a.ident.is_some() && !a.is_server())
        });
        let user = agents
            .iter()
            .position(|a| a.requestor)
            .filter(|&u| Some(u) != client);
        let client_agent = client.map(|i| &agents[i]);
        let user_agent = user.map(|i| &agents[i]);

        let client_id = client_agent.and_then(|a| {
            a.ident
                .or_else(|| a.reference.filter(|_| a.is_application()))
                .map(str::to_string)
        });
        let user_id = user_agent.and_then(|a| {
            a.ident.map(Cow::Borrowed).or_else(|| {
                a.reference.map(|r| match parse_reference(r) {
                    Some(p) => Cow::Owned(format!("{}/{}", p.ty, p.id)),
                    None => Cow::Borrowed(r),
                })
            })
        });

        let policy_token_id = user_agent
            .into_iter()
            .chain(client_agent)
            .chain(agents.iter().filter(|a| a.is_oauth_user()))
            .flat_map(|a| a.policies.iter())
            .find_map(|p| policy_jti(p))
            .map(jti_id);

        let ip = client_agent
            .into_iter()
            .chain(user_agent)
            .chain(agents.iter().filter(|a| !a.is_server()))
            .filter_map(|a| a.network)
            .find_map(ip_of);

        let patient_ref = entities
            .iter()
            .filter_map(|e| e.reference)
            .find(|r| r.ty == "Patient")
            .or_else(|| reference_at(ev, "patient").filter(|r| r.ty == "Patient"));
        let encounter_ref = entities
            .iter()
            .filter_map(|e| e.reference)
            .find(|r| r.ty == "Encounter")
            .or_else(|| reference_at(ev, "encounter").filter(|r| r.ty == "Encounter"));

        let target = entities
            .iter()
            .filter(|e| !e.is_patient_role())
            .filter_map(|e| e.reference)
            .find(|r| r.ty != "Patient")
            .map(|reference| Target {
                reference,
                patient_only: false,
            })
            .or_else(|| {
                patient_ref.map(|reference| Target {
                    reference,
                    patient_only: true,
                })
            });

        let method_hint = method_hint(ev);
        let type_hint = target.filter(|t| !t.patient_only).map(|t| t.reference.ty);
        let request = entities
            .iter()
            .filter_map(|e| e.query)
            .filter_map(decode_base64)
            .find_map(|text| parse_request(&text, type_hint, method_hint));

        Facts {
            client_id,
            user: user_id.map(|u| privacy.pseudonym(IdKind::User, &u)),
            policy_token_id,
            ip,
            patient: patient_ref.map(|r| privacy.pseudonym(IdKind::Patient, r.id)),
            encounter: encounter_ref.map(|r| privacy.pseudonym(IdKind::Encounter, r.id)),
            target,
            request,
        }
    }

    /// What the logged request's bearer token tells.
    fn token_info(&self, ctx: &LineContext<'_>) -> Option<Arc<TokenInfo>> {
        let auth = self.request.as_ref()?.authorization.as_deref()?;
        Some(ctx.privacy.token_info(auth))
    }

    fn user_agent(&self) -> Option<String> {
        self.request.as_ref()?.user_agent.clone()
    }
}

fn access(
    ev: &Value,
    c: Common,
    facts: &Facts<'_>,
    outcome: &Outcome,
    rest_code: Option<&str>,
    ctx: &LineContext<'_>,
) -> AccessEvent {
    let info = facts.token_info(ctx);
    let info = info.as_deref();
    let granted = info.and_then(|i| i.scopes.as_deref());
    let code_interaction = rest_code.and_then(Interaction::parse);

    let auto = FhirBase::auto();
    let auto_ctx = LineContext {
        fhir_base: &auto,
        ..*ctx
    };
    let (method, e) = match &facts.request {
        Some(r) => {
            let e = enrich_access(&r.method, &r.target, granted, ctx);
            let e = if e.interaction.is_none() && !ctx.fhir_base.is_auto() {
                // The event says this was a FHIR call: the source's base
                // (often the gateway's) need not be the server's.
                enrich_access(&r.method, &r.target, granted, &auto_ctx)
            } else {
                e
            };
            (r.method.clone(), e)
        }
        None => match synthesise(rest_code, action_code(ev), facts.target) {
            Some((method, path)) => (
                method.to_string(),
                enrich_access(method, &path, granted, &auto_ctx),
            ),
            // No request to classify or redact (an empty path would read
            // as a POST to the base, i.e. a batch): the event's own
            // interaction stands, the path stays empty.
            None => (method_hint(ev).to_string(), AccessEnrichment::default()),
        },
    };
    let interaction = e.interaction.or(code_interaction);
    let resource_type = e.resource_type.or_else(|| {
        facts
            .target
            .filter(|t| e.interaction.is_none() && !t.patient_only)
            .map(|t| t.reference.ty.to_string())
    });
    let status = outcome.status;
    let access_outcome = match outcome.success {
        Some(true) => AccessOutcome::Allowed,
        Some(false) if outcome.says_denied() => AccessOutcome::Denied,
        Some(false) => AccessOutcome::Error,
        None => status.map_or(AccessOutcome::Allowed, AccessOutcome::from_status),
    };
    let user_agent = facts.user_agent();
    AccessEvent {
        event_id: c.event_id,
        ts: c.ts,
        tenant: c.tenant,
        env: ctx.env,
        client_id: facts
            .client_id
            .clone()
            .or_else(|| info.and_then(|i| i.client_id.clone())),
        app_version: app_version(ctx, user_agent.as_deref()),
        user: facts
            .user
            .clone()
            .or_else(|| info.and_then(|i| i.user.clone())),
        token_id: info
            .map(|i| i.id.clone())
            .or_else(|| facts.policy_token_id.clone()),
        // Only a logged bearer JWT tells these; a BALP policy `jti` does not.
        expires_at: info.and_then(TokenInfo::expires_at),
        token_tenant: info.and_then(|i| i.tenant(ctx.options)),
        method,
        path: e.path,
        interaction,
        resource_type,
        compartment: e.compartment,
        patient: facts
            .patient
            .clone()
            .or(e.patient)
            .or_else(|| info.and_then(|i| i.patient.clone())),
        required: e.required,
        granted_covered: e.granted_covered,
        status,
        outcome: access_outcome,
        bytes: None,
        latency_ms: None,
        ip: facts.ip.clone(),
        user_agent,
        source: ctx.source.to_string(),
        source_file: ctx.source_file.map(str::to_string),
        source_offset: ctx.offset,
    }
}

fn auth(
    c: Common,
    hint: AuthKindHint,
    facts: &Facts<'_>,
    entities: &[Entity<'_>],
    outcome: &Outcome,
    ctx: &LineContext<'_>,
) -> AuthEvent {
    let params = facts
        .request
        .as_ref()
        .map(Request::params)
        .unwrap_or_default();
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, v)| k == name && !v.trim().is_empty())
            .map(|(_, v)| v.trim().to_string())
    };
    let grant_type = param("grant_type");
    let entity_token_id = entities
        .iter()
        .filter(|e| e.is_token())
        .filter_map(|e| e.ident)
        .find_map(policy_jti)
        .map(jti_id);
    let token_id = facts.policy_token_id.clone().or(entity_token_id);
    let kind = match hint {
        AuthKindHint::Logout => AuthKind::Logout,
        AuthKindHint::Introspect => AuthKind::Introspect,
        AuthKindHint::Login if token_id.is_none() => AuthKind::Authorize,
        AuthKindHint::Login | AuthKindHint::Token => match grant_type.as_deref() {
            Some("refresh_token") => AuthKind::Refresh,
            Some("client_credentials") => AuthKind::ClientCredentials,
            Some("urn:ietf:params:oauth:grant-type:token-exchange") => AuthKind::TokenExchange,
            _ => AuthKind::Token,
        },
    };
    let failed = outcome.success == Some(false);
    let error = failed.then(|| {
        let text = outcome
            .detail
            .clone()
            .or_else(|| outcome.code_name())
            .unwrap_or_else(|| "failure".to_string());
        ctx.privacy.redact_reason(&text)
    });
    let scopes_granted = entities
        .iter()
        .filter(|e| e.is_token())
        .find_map(|e| e.detail_text("scope"))
        .map(split_scopes);
    let user_agent = facts.user_agent();
    AuthEvent {
        event_id: c.event_id,
        ts: c.ts,
        tenant: c.tenant,
        env: ctx.env,
        kind,
        outcome: if failed {
            AuthOutcome::Failure
        } else {
            AuthOutcome::Success
        },
        error,
        client_id: facts.client_id.clone().or_else(|| param("client_id")),
        app_version: app_version(ctx, user_agent.as_deref()),
        user: facts.user.clone(),
        session_id: None,
        patient: facts.patient.clone(),
        encounter: facts.encounter.clone(),
        scopes_requested: param("scope").as_deref().map(split_scopes),
        scopes_granted,
        grant_type,
        token_id,
        refresh_token_id: None,
        parent_token_id: None,
        expires_at: None,
        ip: facts.ip.clone(),
        user_agent,
        source: ctx.source.to_string(),
        source_file: ctx.source_file.map(str::to_string),
        source_offset: ctx.offset,
    }
}

fn split_scopes(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}

/// The version a `user_agent:` source setting finds in the User-Agent.
fn app_version(ctx: &LineContext<'_>, user_agent: Option<&str>) -> Option<String> {
    ctx.options
        .app_version_from
        .as_ref()?
        .from_user_agent(user_agent?)
}

// ---------------------------------------------------------------------------
// Time and outcome

/// R5 `occurredDateTime` / `occurredPeriod.start` when readable, else
/// `recorded` (required).
fn event_time(ev: &Value) -> Result<Timestamp, ParseError> {
    let parse = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .and_then(|s| Timestamp::parse_rfc3339(s.trim()))
    };
    if let Some(t) = parse(ev.get("occurredDateTime"))
        .or_else(|| parse(ev.get("occurredPeriod").and_then(|p| p.get("start"))))
    {
        return Ok(t);
    }
    match ev.get("recorded") {
        None | Some(Value::Null) => Err(ParseError::MissingField(Cow::Borrowed("recorded"))),
        Some(Value::String(s)) => Timestamp::parse_rfc3339(s.trim())
            .ok_or_else(|| ParseError::bad_value("recorded", "not an RFC 3339 timestamp")),
        Some(other) => Err(wrong_type("recorded", "an RFC 3339 string", other)),
    }
}

/// The event's outcome, R4 or R5.
#[derive(Debug, Default)]
struct Outcome {
    /// `None`: no outcome recorded, or a code this adapter does not know.
    success: Option<bool>,
    code: Option<String>,
    display: Option<String>,
    /// `outcomeDesc` / `outcome.detail` texts, joined with `; `.
    detail: Option<String>,
    status: Option<u16>,
}

impl Outcome {
    fn read(ev: &Value) -> Result<Outcome, ParseError> {
        let mut o = Outcome::default();
        let mut texts: Vec<&str> = Vec::new();
        let mut detail_codes: Vec<&str> = Vec::new();
        match ev.get("outcome") {
            None | Some(Value::Null) => {}
            // R4: a code.
            Some(Value::String(s)) => o.code = Some(s.trim().to_string()),
            Some(Value::Number(n)) => o.code = Some(n.to_string()),
            // R5: {code: Coding, detail: [CodeableConcept]}.
            Some(Value::Object(m)) => {
                let mut codes = Vec::new();
                push_codings(m.get("code"), &mut codes);
                if let Some(c) = codes.first() {
                    o.code = c.code.map(|s| s.trim().to_string());
                    o.display = c.display.map(str::to_string);
                }
                let mut details = Vec::new();
                if let Some(Value::Array(items)) = m.get("detail") {
                    for item in items {
                        match item.get("text").and_then(Value::as_str) {
                            Some(t) if !t.trim().is_empty() => texts.push(t),
                            _ => {}
                        }
                        push_codings(Some(item), &mut details);
                    }
                }
                for c in &details {
                    detail_codes.extend(c.code);
                    if let Some(d) = c.display.filter(|d| !d.trim().is_empty()) {
                        texts.push(d);
                    }
                }
            }
            Some(other) => return Err(wrong_type("outcome", "a code or an object", other)),
        }
        if let Some(desc) = ev.get("outcomeDesc").and_then(Value::as_str) {
            if !desc.trim().is_empty() {
                texts.push(desc);
            }
        }
        o.success = o.code.as_deref().and_then(|c| match c {
            "0" => Some(true),
            "4" | "8" | "12" => Some(false),
            _ => match c.to_ascii_lowercase().as_str() {
                "success" | "information" | "informational" | "warning" => Some(true),
                "failure" | "error" | "fatal" => Some(false),
                _ => None,
            },
        });
        o.status = detail_codes
            .iter()
            .find_map(|c| status_in_text(c).filter(|_| c.trim().len() == 3))
            .or_else(|| texts.iter().find_map(|t| status_in_text(t)));
        if !texts.is_empty() {
            o.detail = Some(
                texts
                    .iter()
                    .map(|t| t.trim())
                    .collect::<Vec<_>>()
                    .join("; "),
            );
        }
        Ok(o)
    }

    /// A failure the detail attributes to authorization.
    fn says_denied(&self) -> bool {
        if matches!(self.status, Some(401 | 403)) {
            return true;
        }
        let Some(text) = &self.detail else {
            return false;
        };
        let lower = text.to_ascii_lowercase();
        ["forbidden", "unauthorized", "unauthorised", "denied"]
            .iter()
            .any(|w| lower.contains(w))
            || lower
                .split(|c: char| !c.is_ascii_alphanumeric())
                .any(|w| w == "401" || w == "403")
    }

    /// The outcome code's name, for an error without detail.
    fn code_name(&self) -> Option<String> {
        match self.code.as_deref()? {
            "4" => Some("minor failure".into()),
            "8" => Some("serious failure".into()),
            "12" => Some("major failure".into()),
            other => Some(self.display.clone().unwrap_or_else(|| other.to_string())),
        }
    }
}

/// An HTTP status a text starts with: `403`, `403 Forbidden`, `HTTP 403`,
/// `HTTP/1.1 403 Forbidden`.
fn status_in_text(text: &str) -> Option<u16> {
    let mut s = text.trim_start();
    if s.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("http")) {
        s = &s[4..];
        if let Some(rest) = s.strip_prefix('/') {
            s = rest.trim_start_matches(|c: char| c.is_ascii_digit() || c == '.');
        }
        s = s.trim_start_matches([' ', ':']);
    }
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    if digits != 3 || s[3..].starts_with(|c: char| c.is_alphanumeric()) {
        return None;
    }
    let n: u16 = s[..3].parse().ok()?;
    (100..=599).contains(&n).then_some(n)
}

// ---------------------------------------------------------------------------
// The request

/// A logged HTTP request, reduced to what the adapter reads. Held only while
/// the event is built; the target goes out only through `enrich_access`.
#[derive(Debug)]
struct Request {
    method: String,
    /// Path (or URL) and query.
    target: String,
    /// The `Authorization: Bearer ..` header value.
    authorization: Option<String>,
    user_agent: Option<String>,
    /// The first line of the body.
    body: Option<String>,
}

impl Request {
    /// The query's and a form body's parameters (for token requests).
    fn params(&self) -> Vec<(String, String)> {
        let mut params = match self.target.split_once('?') {
            Some((_, q)) => parse_query(q.split('#').next().unwrap_or(q)),
            None => Vec::new(),
        };
        if let Some(body) = self.body.as_deref().filter(|b| is_form(b)) {
            params.extend(parse_query(body));
        }
        params
    }
}

fn is_form(body: &str) -> bool {
    body.contains('=') && !body.contains(char::is_whitespace) && !body.starts_with(['{', '<'])
}

const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

/// Reads a decoded `entity.query`: an HTTP request (request line, then
/// optional headers and body), a URL or path, or a bare query string (then
/// prefixed with `type_hint`). `None` for anything else (free text).
fn parse_request(text: &str, type_hint: Option<&str>, method_hint: &str) -> Option<Request> {
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let first = lines.by_ref().find(|l| !l.trim().is_empty())?.trim();
    let mut authorization = None;
    let mut user_agent = None;
    let mut form_body = true;
    for l in lines.by_ref() {
        if l.trim().is_empty() {
            break;
        }
        let Some((name, value)) = l.split_once(':') else {
            continue;
        };
        let value = value.trim();
        let name = name.trim();
        if name.eq_ignore_ascii_case("authorization") {
            let bearer = value
                .get(..7)
                .is_some_and(|p| p.eq_ignore_ascii_case("bearer "));
            if bearer && value.len() > 7 {
                authorization = Some(value.to_string());
            }
        } else if name.eq_ignore_ascii_case("user-agent") {
            user_agent = Some(value.to_string()).filter(|v| !v.is_empty());
        } else if name.eq_ignore_ascii_case("content-type") {
            form_body = value
                .to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded");
        }
    }
    let body = lines
        .map(str::trim)
        .find(|l| !l.is_empty())
        .filter(|_| form_body)
        .map(str::to_string);

    let mut words = first.split_whitespace();
    let w1 = words.next()?;
    let (method, mut target) = if METHODS.contains(&w1) {
        let t = words.next()?;
        (w1.to_string(), t.to_string())
    } else if words.next().is_some() {
        return None;
    } else {
        let has_query = w1.contains('?');
        let pre = w1.split('?').next().unwrap_or(w1);
        let bare_query =
            w1.starts_with('?') || (!has_query && pre.contains('=') && !pre.contains('/'));
        let target = if bare_query {
            let q = w1.trim_start_matches('?');
            match type_hint {
                Some(ty) => format!("{ty}?{q}"),
                None => format!("?{q}"),
            }
        } else {
            w1.to_string()
        };
        (method_hint.to_string(), target)
    };
    // A POST search sends its parameters as a form body.
    let path = target.split('?').next().unwrap_or(&target);
    if method == "POST" && path.trim_end_matches('/').ends_with("/_search") {
        if let Some(b) = body.as_deref().filter(|b| is_form(b)) {
            target.push(if target.contains('?') { '&' } else { '?' });
            target.push_str(b);
        }
    }
    Some(Request {
        method,
        target,
        authorization,
        user_agent,
        body,
    })
}

/// Standard base64, padding optional (`entity.query` is `base64Binary`).
const B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// base64url, padding optional, for writers that use it.
const B64URL: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

fn decode_base64(text: &str) -> Option<String> {
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    if compact.is_empty() {
        return None;
    }
    let bytes = B64
        .decode(compact.as_bytes())
        .or_else(|_| B64URL.decode(compact.as_bytes()))
        .ok()?;
    String::from_utf8(bytes).ok()
}

/// The method an interaction implies, when the log gives none: from the
/// restful-interaction code, else the R4/R5 `action` (C/R/U/D/E).
fn method_hint(ev: &Value) -> &'static str {
    let mut subs = Vec::new();
    push_codings(ev.get("subtype"), &mut subs);
    push_codings(ev.get("code"), &mut subs);
    let code = subs
        .iter()
        .filter(|c| c.system.is_none_or(|s| s == RESTFUL_INTERACTION))
        .find_map(|c| c.code.and_then(Interaction::parse));
    match code {
        Some(Interaction::Create | Interaction::Batch) => "POST",
        Some(Interaction::Update) => "PUT",
        Some(Interaction::Patch) => "PATCH",
        Some(Interaction::Delete) => "DELETE",
        Some(_) => "GET",
        None => match action_code(ev) {
            Some("C") => "POST",
            Some("U") => "PUT",
            Some("D") => "DELETE",
            _ => "GET",
        },
    }
}

fn action_code(ev: &Value) -> Option<&str> {
    ev.get("action").and_then(Value::as_str).map(str::trim)
}

/// The request a REST event implies when it logs none: its interaction
/// applied to its target (see the module documentation).
fn synthesise(
    rest_code: Option<&str>,
    action: Option<&str>,
    target: Option<Target<'_>>,
) -> Option<(&'static str, String)> {
    let code = match rest_code {
        Some(c) => c.trim().to_ascii_lowercase(),
        None => match action? {
            "C" => "create",
            "R" => "read",
            "U" => "update",
            "D" => "delete",
            _ => return None,
        }
        .to_string(),
    };
    match code.as_str() {
        "batch" | "transaction" => return Some(("POST", "/".into())),
        "capabilities" => return Some(("GET", "metadata".into())),
        "history-system" => return Some(("GET", "_history".into())),
        _ => {}
    }
    let t = target?;
    let Ref { ty, id, version } = t.reference;
    Some(match code.as_str() {
        "read" => ("GET", format!("{ty}/{id}")),
        "vread" => match version {
            Some(v) => ("GET", format!("{ty}/{id}/_history/{v}")),
            None => ("GET", format!("{ty}/{id}")),
        },
        "update" => ("PUT", format!("{ty}/{id}")),
        "patch" => ("PATCH", format!("{ty}/{id}")),
        "delete" => ("DELETE", format!("{ty}/{id}")),
        "history" | "history-instance" => ("GET", format!("{ty}/{id}/_history")),
        "history-type" => ("GET", format!("{ty}/_history")),
        "create" => ("POST", ty.to_string()),
        "search" | "search-type" if !t.patient_only => ("GET", ty.to_string()),
        _ => return None,
    })
}

// ---------------------------------------------------------------------------
// Agents, entities, references, codings

#[derive(Debug, Clone, Copy)]
struct Coding<'a> {
    system: Option<&'a str>,
    code: Option<&'a str>,
    display: Option<&'a str>,
}

impl Coding<'_> {
    /// This code, in `system` or with no system given.
    fn is(&self, system: &str, code: &str) -> bool {
        self.code.map(str::trim) == Some(code) && self.system.is_none_or(|s| s == system)
    }
}

/// The codings of a Coding, a CodeableConcept, or an array of either.
fn push_codings<'a>(v: Option<&'a Value>, out: &mut Vec<Coding<'a>>) {
    match v {
        Some(Value::Array(items)) => {
            for item in items {
                push_codings(Some(item), out);
            }
        }
        Some(Value::Object(m)) => {
            if let Some(Value::Array(codings)) = m.get("coding") {
                for c in codings {
                    push_codings(Some(c), out);
                }
            } else if m.contains_key("code") || m.contains_key("system") {
                let s = |k: &str| m.get(k).and_then(Value::as_str);
                out.push(Coding {
                    system: s("system"),
                    code: s("code"),
                    display: s("display"),
                });
            }
        }
        _ => {}
    }
}

#[derive(Debug)]
struct Agent<'a> {
    types: Vec<Coding<'a>>,
    requestor: bool,
    /// `who.identifier.value`
    ident: Option<&'a str>,
    /// `who.reference`
    reference: Option<&'a str>,
    /// R4 `network.address`, R5 `networkString` / `networkUri`.
    network: Option<&'a str>,
    policies: Vec<&'a str>,
}

impl Agent<'_> {
    fn is_application(&self) -> bool {
        self.types.iter().any(|c| {
            c.is(DCM, "110150")
                || c.code
                    .is_some_and(|s| s.eq_ignore_ascii_case("application"))
                || c.display
                    .is_some_and(|s| s.eq_ignore_ascii_case("application"))
        })
    }

    fn is_server(&self) -> bool {
        self.types
            .iter()
            .any(|c| c.is(DCM, "110152") || c.code == Some("AuthzOauthService"))
    }

    fn is_oauth_user(&self) -> bool {
        self.types.iter().any(|c| c.code == Some("UserOauthAgent"))
    }
}

fn agents(ev: &Value) -> Result<Vec<Agent<'_>>, ParseError> {
    let list = match ev.get("agent") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(other) => return Err(wrong_type("agent", "an array", other)),
    };
    Ok(list
        .iter()
        .filter(|a| a.is_object())
        .map(|a| {
            let mut types = Vec::new();
            push_codings(a.get("type"), &mut types);
            let who = a.get("who");
            let policies = match a.get("policy") {
                Some(Value::Array(p)) => p.iter().filter_map(non_empty_str).collect(),
                Some(v) => non_empty_str(v).into_iter().collect(),
                None => Vec::new(),
            };
            Agent {
                types,
                requestor: a.get("requestor").and_then(Value::as_bool) == Some(true),
                ident: who
                    .and_then(|w| w.get("identifier"))
                    .and_then(|i| i.get("value"))
                    .and_then(non_empty_str),
                reference: who.and_then(|w| w.get("reference")).and_then(non_empty_str),
                network: a
                    .get("network")
                    .and_then(|n| n.get("address"))
                    .and_then(non_empty_str)
                    .or_else(|| a.get("networkString").and_then(non_empty_str))
                    .or_else(|| a.get("networkUri").and_then(non_empty_str)),
                policies,
            }
        })
        .collect())
}

#[derive(Debug)]
struct Entity<'a> {
    value: &'a Value,
    /// `what.reference`, when it names a resource.
    reference: Option<Ref<'a>>,
    /// `what.identifier.value`
    ident: Option<&'a str>,
    roles: Vec<Coding<'a>>,
    types: Vec<Coding<'a>>,
    /// `query` (base64, not decoded).
    query: Option<&'a str>,
}

impl Entity<'_> {
    fn is_patient_role(&self) -> bool {
        self.roles.iter().any(|c| c.is(OBJECT_ROLE, "1"))
    }

    /// A token (IUA token response, BALP token entity).
    fn is_token(&self) -> bool {
        self.roles.iter().any(|c| c.is(OBJECT_ROLE, "13"))
            || self.types.iter().any(|c| c.code == Some("UserOauthAgent"))
    }

    /// The `valueString` of the `detail` whose type is `name` (R4: a
    /// string; R5: a CodeableConcept).
    fn detail_text(&self, name: &str) -> Option<&str> {
        let Value::Array(details) = self.value.get("detail")? else {
            return None;
        };
        details.iter().find_map(|d| {
            let ty = d.get("type")?;
            let matches = match ty {
                Value::String(s) => s.eq_ignore_ascii_case(name),
                other => {
                    let mut cs = Vec::new();
                    push_codings(Some(other), &mut cs);
                    cs.iter()
                        .any(|c| c.code.is_some_and(|s| s.eq_ignore_ascii_case(name)))
                        || other
                            .get("text")
                            .and_then(Value::as_str)
                            .is_some_and(|s| s.eq_ignore_ascii_case(name))
                }
            };
            if !matches {
                return None;
            }
            d.get("valueString").and_then(non_empty_str)
        })
    }
}

fn entities(ev: &Value) -> Result<Vec<Entity<'_>>, ParseError> {
    let list = match ev.get("entity") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(other) => return Err(wrong_type("entity", "an array", other)),
    };
    Ok(list
        .iter()
        .filter(|e| e.is_object())
        .map(|e| {
            let what = e.get("what");
            let mut roles = Vec::new();
            push_codings(e.get("role"), &mut roles);
            let mut types = Vec::new();
            push_codings(e.get("type"), &mut types);
            Entity {
                value: e,
                reference: what
                    .and_then(|w| w.get("reference"))
                    .and_then(Value::as_str)
                    .and_then(parse_reference),
                ident: what
                    .and_then(|w| w.get("identifier"))
                    .and_then(|i| i.get("value"))
                    .and_then(non_empty_str),
                roles,
                types,
                query: e.get("query").and_then(non_empty_str),
            }
        })
        .collect())
}

/// A literal reference `Type/id[/_history/vid]`, relative or absolute.
#[derive(Debug, Clone, Copy)]
struct Ref<'a> {
    ty: &'a str,
    id: &'a str,
    version: Option<&'a str>,
}

fn parse_reference(r: &str) -> Option<Ref<'_>> {
    let r = r.trim();
    if r.starts_with('#') {
        return None;
    }
    let r = r.split(['?', '#']).next().unwrap_or(r);
    let segs: Vec<&str> = r.split('/').filter(|s| !s.is_empty()).collect();
    let (ty, id, version) = match segs.as_slice() {
        [.., ty, id, "_history", v] => (*ty, *id, Some(*v)),
        [.., ty, id] => (*ty, *id, None),
        _ => return None,
    };
    let type_ok = ty.starts_with(|c: char| c.is_ascii_uppercase())
        && ty.bytes().all(|b| b.is_ascii_alphanumeric());
    let id_ok = !id.starts_with(['_', '$']) && !id.contains(char::is_whitespace);
    (type_ok && id_ok).then_some(Ref { ty, id, version })
}

/// A Reference field of the event itself (R5 `patient`, `encounter`).
fn reference_at<'a>(ev: &'a Value, field: &str) -> Option<Ref<'a>> {
    ev.get(field)?
        .get("reference")?
        .as_str()
        .and_then(parse_reference)
}

/// The token id of a `policy` (or token identifier) value, when it is a jti:
/// the `urn:ietf:params:oauth:jti:` form, or a bare value (no URI scheme).
fn policy_jti(p: &str) -> Option<&str> {
    let p = p.trim();
    let jti = match p.strip_prefix(JTI_URN) {
        Some(j) => j.trim(),
        None if p.contains(':') => return None,
        None => p,
    };
    (!jti.is_empty()).then_some(jti)
}

/// A network address as an IP (a URI's host, brackets and a port dropped);
/// `None` for machine names.
fn ip_of(address: &str) -> Option<String> {
    let mut a = address.trim();
    if let Some(i) = a.find("://") {
        a = &a[i + 3..];
        a = a.split(['/', '?', '#']).next().unwrap_or(a);
    }
    if let Ok(ip) = a.trim_matches(['[', ']']).parse::<IpAddr>() {
        return Some(ip.to_string());
    }
    // `[v6]:port` or `v4:port`
    let host = match a.strip_prefix('[') {
        Some(rest) => rest.split(']').next()?,
        None => a.rsplit_once(':')?.0,
    };
    host.parse::<IpAddr>().ok().map(|ip| ip.to_string())
}

// ---------------------------------------------------------------------------
// JSON helpers

fn non_empty_str(v: &Value) -> Option<&str> {
    v.as_str().map(str::trim).filter(|s| !s.is_empty())
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn wrong_type(field: &'static str, expected: &'static str, found: &Value) -> ParseError {
    ParseError::WrongType {
        field: Cow::Borrowed(field),
        expected,
        found: kind_of(found),
    }
}

fn resource_type(v: &Value) -> Result<&str, ParseError> {
    match v.get("resourceType") {
        None | Some(Value::Null) => Err(ParseError::MissingField(Cow::Borrowed("resourceType"))),
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(wrong_type("resourceType", "a string", other)),
    }
}

/// Names a Bundle entry's fields in an error.
fn in_entry(i: usize, e: ParseError) -> ParseError {
    let name = |f: Cow<'static, str>| Cow::Owned(format!("entry[{i}].resource.{f}"));
    match e {
        ParseError::MissingField(f) => ParseError::MissingField(name(f)),
        ParseError::WrongType {
            field,
            expected,
            found,
        } => ParseError::WrongType {
            field: name(field),
            expected,
            found,
        },
        ParseError::BadValue { field, reason } => ParseError::BadValue {
            field: name(field),
            reason,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        let r = parse_reference("Patient/example/_history/1").unwrap();
        assert_eq!((r.ty, r.id, r.version), ("Patient", "example", Some("1")));
        let r = parse_reference("https://x.org/fhir/Observation/9").unwrap();
        assert_eq!((r.ty, r.id, r.version), ("Observation", "9", None));
        assert!(parse_reference("#o1").is_none());
        assert!(parse_reference("urn:uuid:1234").is_none());
        assert!(parse_reference("Patient/_search").is_none());
    }

    #[test]
    fn statuses() {
        assert_eq!(status_in_text("403"), Some(403));
        assert_eq!(status_in_text("HTTP 401 Unauthorized"), Some(401));
        assert_eq!(status_in_text("HTTP/1.1 404 Not Found"), Some(404));
        assert_eq!(status_in_text("4035 items"), None);
        assert_eq!(status_in_text("Invalid request"), None);
        assert_eq!(status_in_text("200ms"), None);
    }

    #[test]
    fn ips() {
        assert_eq!(ip_of("10.1.2.3").as_deref(), Some("10.1.2.3"));
        assert_eq!(ip_of("10.1.2.3:443").as_deref(), Some("10.1.2.3"));
        assert_eq!(
            ip_of("http://2001:0db8:85a3:0000:0000:8a2e:0370:7334").as_deref(),
            Some("2001:db8:85a3::8a2e:370:7334")
        );
        assert_eq!(ip_of("[::1]:8080").as_deref(), Some("::1"));
        assert_eq!(ip_of("Workstation1.ehr.familyclinic.com"), None);
    }

    #[test]
    fn policies() {
        assert_eq!(policy_jti("urn:ietf:params:oauth:jti:abc"), Some("abc"));
        assert_eq!(
            policy_jti("C187CC480FAC40A0936902D8BC324F5F"),
            Some("C187CC480FAC40A0936902D8BC324F5F")
        );
        assert_eq!(policy_jti("http://policy.example.org/p1"), None);
        assert_eq!(policy_jti("urn:oid:1.2.3"), None);
    }

    #[test]
    fn requests() {
        let r = parse_request("GET /fhir/Observation?patient=1 HTTP/1.1\r\nUser-Agent: App/1.0\r\nAuthorization: Bearer abc\r\n", None, "GET").unwrap();
        assert_eq!(
            (r.method.as_str(), r.target.as_str()),
            ("GET", "/fhir/Observation?patient=1")
        );
        assert_eq!(r.user_agent.as_deref(), Some("App/1.0"));
        assert_eq!(r.authorization.as_deref(), Some("Bearer abc"));
        let r = parse_request("patient=1&code=x", Some("Observation"), "GET").unwrap();
        assert_eq!(r.target, "Observation?patient=1&code=x");
        let r = parse_request("POST /r4/Observation/_search HTTP/1.1\nContent-Type: application/x-www-form-urlencoded\n\npatient=ex&_count=10\n", None, "GET").unwrap();
        assert_eq!(r.target, "/r4/Observation/_search?patient=ex&_count=10");
        assert!(parse_request("not a request at all", None, "GET").is_none());
    }
}
