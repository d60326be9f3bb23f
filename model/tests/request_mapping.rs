//! FHIR R4 REST request -> interaction, type, compartment, patient and the
//! SMART v2 permission it needs.

use scopewatch_model::request::{
    bundle_entries, classify, FhirBase, Interaction, Level, RequestError, RequestNeed,
};
use scopewatch_model::{Context, Perms};

use Interaction::*;
use Level::*;

/// One expected classification. Every field left unset must be `None`, so a
/// row states everything the classifier should find.
#[derive(Debug, Clone)]
struct Case {
    method: &'static str,
    path: &'static str,
    base: Option<&'static str>,
    interaction: Interaction,
    level: Level,
    resource_type: Option<&'static str>,
    id: Option<&'static str>,
    operation: Option<&'static str>,
    compartment: Option<&'static str>,
    patient: Option<&'static str>,
    /// `Type.letters` or `*.letters`.
    need: Option<&'static str>,
}

/// A case against the configured base `/fhir`.
fn case(method: &'static str, path: &'static str, interaction: Interaction, level: Level) -> Case {
    Case {
        method,
        path,
        base: Some("/fhir"),
        interaction,
        level,
        resource_type: None,
        id: None,
        operation: None,
        compartment: None,
        patient: None,
        need: None,
    }
}

impl Case {
    fn auto(mut self) -> Self {
        self.base = None;
        self
    }
    fn base(mut self, base: &'static str) -> Self {
        self.base = Some(base);
        self
    }
    fn ty(mut self, t: &'static str) -> Self {
        self.resource_type = Some(t);
        self
    }
    fn id(mut self, id: &'static str) -> Self {
        self.id = Some(id);
        self
    }
    fn op(mut self, op: &'static str) -> Self {
        self.operation = Some(op);
        self
    }
    fn compartment(mut self, c: &'static str) -> Self {
        self.compartment = Some(c);
        self
    }
    fn patient(mut self, p: &'static str) -> Self {
        self.patient = Some(p);
        self
    }
    fn need(mut self, n: &'static str) -> Self {
        self.need = Some(n);
        self
    }

    fn fhir_base(&self) -> FhirBase {
        match self.base {
            Some(b) => FhirBase::parse(b).unwrap(),
            None => FhirBase::auto(),
        }
    }

    fn check(&self) {
        let label = format!("{} {} (base {:?})", self.method, self.path, self.base);
        let got = classify(self.method, self.path, &self.fhir_base())
            .unwrap_or_else(|e| panic!("{label}: unexpected error: {e}"));
        assert_eq!(got.interaction, self.interaction, "{label}: interaction");
        assert_eq!(got.level, self.level, "{label}: level");
        assert_eq!(
            got.resource_type.as_deref(),
            self.resource_type,
            "{label}: resource type"
        );
        assert_eq!(got.id.as_deref(), self.id, "{label}: id");
        assert_eq!(
            got.operation.as_deref(),
            self.operation,
            "{label}: operation"
        );
        assert_eq!(
            got.compartment.as_deref(),
            self.compartment,
            "{label}: compartment"
        );
        assert_eq!(got.patient.as_deref(), self.patient, "{label}: patient");
        assert_eq!(
            got.need.as_ref().map(|n| n.to_string()).as_deref(),
            self.need,
            "{label}: need"
        );
    }
}

fn run(cases: &[Case]) {
    for c in cases {
        c.check();
    }
}

#[test]
fn instance_interactions() {
    run(&[
        case("GET", "/fhir/Patient/123", Read, Instance)
            .ty("Patient")
            .id("123")
            .patient("123")
            .need("Patient.r"),
        case("GET", "/fhir/Observation/o1", Read, Instance)
            .ty("Observation")
            .id("o1")
            .need("Observation.r"),
        // Methods are case-insensitive; HEAD is GET.
        case("head", "/fhir/Observation/o1", Read, Instance)
            .ty("Observation")
            .id("o1")
            .need("Observation.r"),
        case("GET", "/fhir/Observation/o1/_history/2", Vread, Instance)
            .ty("Observation")
            .id("o1")
            .need("Observation.r"),
        case("GET", "/fhir/Patient/123/_history/7", Vread, Instance)
            .ty("Patient")
            .id("123")
            .patient("123")
            .need("Patient.r"),
        case("GET", "/fhir/Patient/123/_history", History, Instance)
            .ty("Patient")
            .id("123")
            .patient("123")
            .need("Patient.r"),
        case("PUT", "/fhir/Patient/123", Update, Instance)
            .ty("Patient")
            .id("123")
            .patient("123")
            .need("Patient.u"),
        case("patch", "/fhir/Observation/o1", Patch, Instance)
            .ty("Observation")
            .id("o1")
            .need("Observation.u"),
        case("DELETE", "/fhir/Observation/o1", Delete, Instance)
            .ty("Observation")
            .id("o1")
            .need("Observation.d"),
        case("DELETE", "/fhir/Patient/123", Delete, Instance)
            .ty("Patient")
            .id("123")
            .patient("123")
            .need("Patient.d"),
    ]);
}

#[test]
fn type_and_system_interactions() {
    run(&[
        case("GET", "/fhir/Observation/_history", History, Type)
            .ty("Observation")
            .need("Observation.s"),
        case("GET", "/fhir/_history", History, System).need("*.s"),
        case("GET", "/fhir/Observation", Search, Type)
            .ty("Observation")
            .need("Observation.s"),
        case(
            "GET",
            "/fhir/Observation?code=1234-5&_count=10",
            Search,
            Type,
        )
        .ty("Observation")
        .need("Observation.s"),
        case("POST", "/fhir/Observation/_search", Search, Type)
            .ty("Observation")
            .need("Observation.s"),
        case("GET", "/fhir?_type=Observation,Condition", Search, System).need("*.s"),
        case("GET", "/fhir/?_type=Observation", Search, System).need("*.s"),
        case("POST", "/fhir/_search", Search, System).need("*.s"),
        case("POST", "/fhir/Observation", Create, Type)
            .ty("Observation")
            .need("Observation.c"),
        case("POST", "/fhir/Patient", Create, Type)
            .ty("Patient")
            .need("Patient.c"),
        // Conditional forms keep their letters, at type level.
        case(
            "PUT",
            "/fhir/Observation?identifier=lab%7Co-1",
            Update,
            Type,
        )
        .ty("Observation")
        .need("Observation.u"),
        case("PATCH", "/fhir/Patient?_id=123", Patch, Type)
            .ty("Patient")
            .patient("123")
            .need("Patient.u"),
        case(
            "DELETE",
            "/fhir/Observation?patient=123&code=x",
            Delete,
            Type,
        )
        .ty("Observation")
        .patient("123")
        .need("Observation.d"),
    ]);
}

#[test]
fn compartment_searches() {
    run(&[
        case("GET", "/fhir/Patient/123/Observation", Search, Type)
            .ty("Observation")
            .compartment("Patient/123")
            .patient("123")
            .need("Observation.s"),
        case(
            "GET",
            "/fhir/Patient/123/Observation?code=8867-4",
            Search,
            Type,
        )
        .ty("Observation")
        .compartment("Patient/123")
        .patient("123")
        .need("Observation.s"),
        case("GET", "/fhir/Patient/123/*", Search, Type)
            .compartment("Patient/123")
            .patient("123")
            .need("*.s"),
        case("POST", "/fhir/Patient/123/Condition/_search", Search, Type)
            .ty("Condition")
            .compartment("Patient/123")
            .patient("123")
            .need("Condition.s"),
        // Not a Patient compartment: no patient from the path.
        case("GET", "/fhir/Encounter/e1/Observation", Search, Type)
            .ty("Observation")
            .compartment("Encounter/e1")
            .need("Observation.s"),
    ]);
}

#[test]
fn operations() {
    run(&[
        case("GET", "/fhir/Patient/123/$everything", Operation, Instance)
            .ty("Patient")
            .id("123")
            .op("$everything")
            .patient("123")
            .need("*.rs"),
        // Logged percent-encoded `$`, and arguments in the query.
        case(
            "GET",
            "/fhir/Patient/123/%24everything?_since=2024-01-01",
            Operation,
            Instance,
        )
        .ty("Patient")
        .id("123")
        .op("$everything")
        .patient("123")
        .need("*.rs"),
        case(
            "POST",
            "/fhir/Encounter/e1/$everything",
            Operation,
            Instance,
        )
        .ty("Encounter")
        .id("e1")
        .op("$everything")
        .need("*.rs"),
        case("GET", "/fhir/$export?_type=Patient", Operation, System)
            .op("$export")
            .need("*.rs"),
        case("GET", "/fhir/Patient/$export", Operation, Type)
            .ty("Patient")
            .op("$export")
            .need("*.rs"),
        case("GET", "/fhir/Group/g1/$export", Operation, Instance)
            .ty("Group")
            .id("g1")
            .op("$export")
            .need("*.rs"),
        case("GET", "/fhir/Observation/o1/$meta", Operation, Instance)
            .ty("Observation")
            .id("o1")
            .op("$meta")
            .need("Observation.r"),
        case("GET", "/fhir/Observation/$meta", Operation, Type)
            .ty("Observation")
            .op("$meta")
            .need("Observation.r"),
        case("GET", "/fhir/$meta", Operation, System)
            .op("$meta")
            .need("*.r"),
        case(
            "GET",
            "/fhir/Observation/o1/_history/2/$meta",
            Operation,
            Instance,
        )
        .ty("Observation")
        .id("o1")
        .op("$meta")
        .need("Observation.r"),
        case(
            "POST",
            "/fhir/Observation/o1/$meta-add",
            Operation,
            Instance,
        )
        .ty("Observation")
        .id("o1")
        .op("$meta-add")
        .need("Observation.u"),
        // Unknown operations: instance r, type s, system *.s.
        case(
            "POST",
            "/fhir/Observation/o1/$validate",
            Operation,
            Instance,
        )
        .ty("Observation")
        .id("o1")
        .op("$validate")
        .need("Observation.r"),
        case(
            "GET",
            "/fhir/Observation/$lastn?patient=123&category=vital-signs",
            Operation,
            Type,
        )
        .ty("Observation")
        .op("$lastn")
        .patient("123")
        .need("Observation.s"),
        case("POST", "/fhir/$process-message", Operation, System)
            .op("$process-message")
            .need("*.s"),
    ]);
}

#[test]
fn capabilities_and_batch_need_nothing() {
    run(&[
        case("GET", "/fhir/metadata", Capabilities, System),
        case("GET", "/fhir/metadata?_summary=true", Capabilities, System),
        // `.well-known` is served at the server root, outside the base.
        case(
            "GET",
            "/.well-known/smart-configuration",
            Capabilities,
            System,
        ),
        case(
            "GET",
            "/fhir/.well-known/smart-configuration",
            Capabilities,
            System,
        ),
        case(
            "GET",
            "/.well-known/smart-configuration",
            Capabilities,
            System,
        )
        .auto(),
        case("GET", "/fhir/r4/metadata", Capabilities, System).auto(),
        case("POST", "/fhir", Batch, System),
        case("POST", "/fhir/", Batch, System),
        case("POST", "/fhir/r4/tenant-a", Batch, System).auto(),
    ]);
}

#[test]
fn prefixed_bases() {
    run(&[
        case("GET", "/fhir/r4/acme/Observation/1", Read, Instance)
            .base("/fhir/r4/{tenant}")
            .ty("Observation")
            .id("1")
            .need("Observation.r"),
        case("GET", "/fhir/r4/acme/Patient/p9/Observation", Search, Type)
            .base("/fhir/r4/{tenant}")
            .ty("Observation")
            .compartment("Patient/p9")
            .patient("p9")
            .need("Observation.s"),
        case("POST", "/fhir/r4/acme", Batch, System).base("/fhir/r4/{tenant}"),
        case("GET", "/fhir/r4/tenant-a/Observation/1", Read, Instance)
            .auto()
            .ty("Observation")
            .id("1")
            .need("Observation.r"),
        case(
            "GET",
            "/fhir/r4/tenant-a/Patient/p9/Observation?code=x",
            Search,
            Type,
        )
        .auto()
        .ty("Observation")
        .compartment("Patient/p9")
        .patient("p9")
        .need("Observation.s"),
        case("GET", "/fhir/r4/tenant-a/$export", Operation, System)
            .auto()
            .op("$export")
            .need("*.rs"),
        case("GET", "/fhir/r4/tenant-a/_history", History, System)
            .auto()
            .need("*.s"),
        case("GET", "/fhir/r4?_type=Patient", Search, System)
            .auto()
            .need("*.s"),
        // Empty segments and trailing slashes are tolerated.
        case("GET", "//fhir//r4/Observation//o1/", Read, Instance)
            .auto()
            .ty("Observation")
            .id("o1")
            .need("Observation.r"),
        case("GET", "/fhir//Observation/o1/", Read, Instance)
            .ty("Observation")
            .id("o1")
            .need("Observation.r"),
        // An absolute URL as target: the host is ignored.
        case(
            "GET",
            "https://ehr.example.org/fhir/Observation/o1",
            Read,
            Instance,
        )
        .ty("Observation")
        .id("o1")
        .need("Observation.r"),
    ]);
}

#[test]
fn patient_from_search_params() {
    let on_observation = [
        "patient=123",
        "patient=Patient/123",
        "patient:Patient=123",
        "subject=Patient/123",
        "subject:Patient=123",
        "subject=https://ehr.example.org/fhir/Patient/123",
        "patient=https%3A%2F%2Fehr.example.org%2Ffhir%2FPatient%2F123",
        "patient=Patient%2F123&patient=123",
        "subject:Patient=Patient/123/_history/4",
    ];
    for q in on_observation {
        let path = format!("/fhir/Observation?{q}&code=x");
        let got = classify("GET", &path, &FhirBase::parse("/fhir").unwrap()).unwrap();
        assert_eq!(got.patient.as_deref(), Some("123"), "{q}");
        assert_eq!(got.patients, vec!["123".to_string()], "{q}");
    }
    let got = classify("GET", "/fhir/Patient?_id=123", &FhirBase::auto()).unwrap();
    assert_eq!(got.patient.as_deref(), Some("123"));

    // Not a patient: subject without a type, another type, `_id` of another type,
    // a modifier that is not a reference.
    for path in [
        "/fhir/Observation?subject=123",
        "/fhir/Observation?subject=Group/9",
        "/fhir/Observation?patient=Group/9",
        "/fhir/Observation?_id=123",
        "/fhir/Observation?patient:missing=true",
        "/fhir/Observation?patient.name=smith",
        "/fhir/Observation?patient=",
    ] {
        let got = classify("GET", path, &FhirBase::auto()).unwrap();
        assert_eq!(got.patient, None, "{path}");
        assert!(got.patients.is_empty(), "{path}");
    }

    // Several patients: none is "the" patient, all are listed.
    let got = classify(
        "GET",
        "/fhir/Observation?patient=1,2&subject=Patient/3",
        &FhirBase::auto(),
    )
    .unwrap();
    assert_eq!(got.patient, None);
    assert_eq!(got.patients, vec!["1", "2", "3"]);
    let got = classify(
        "GET",
        "/fhir/Patient/1/Observation?patient=2",
        &FhirBase::auto(),
    )
    .unwrap();
    assert_eq!(got.patient, None);
    assert_eq!(got.patients, vec!["1", "2"]);
}

#[test]
fn query_is_form_decoded_in_order() {
    let got = classify(
        "GET",
        "/fhir/Observation?code=http%3A%2F%2Floinc.org%7C1234-5&note=blood+pressure&x=%2B1&code=a%20b#frag",
        &FhirBase::auto(),
    )
    .unwrap();
    assert_eq!(
        got.query,
        vec![
            ("code".to_string(), "http://loinc.org|1234-5".to_string()),
            ("note".to_string(), "blood pressure".to_string()),
            ("x".to_string(), "+1".to_string()),
            ("code".to_string(), "a b".to_string()),
        ]
    );
}

#[test]
fn required_scope_renders_in_context() {
    let got = classify("GET", "/fhir/Patient/1/Observation", &FhirBase::auto()).unwrap();
    assert_eq!(
        got.required_scope(Context::Patient)
            .map(|r| r.to_string())
            .as_deref(),
        Some("patient/Observation.s")
    );
    let need = got.need.unwrap();
    assert_eq!(need.perms, Perms::S);
    assert_eq!(need.resource.as_deref(), Some("Observation"));
    let got = classify("GET", "/fhir/$export", &FhirBase::auto()).unwrap();
    assert_eq!(
        got.required_scope(Context::System)
            .map(|r| r.to_string())
            .as_deref(),
        Some("system/*.rs")
    );
    assert_eq!(got.need.unwrap().resource, None);
    let got = classify("GET", "/fhir/metadata", &FhirBase::auto()).unwrap();
    assert_eq!(got.required_scope(Context::User), None);
}

fn err(method: &str, path: &str, base: &FhirBase) -> RequestError {
    match classify(method, path, base) {
        Ok(n) => panic!("{method} {path}: expected an error, got {n:?}"),
        Err(e) => e,
    }
}

#[test]
fn errors_say_what_failed() {
    let fhir = FhirBase::parse("/fhir").unwrap();
    let auto = FhirBase::auto();

    let e = err("GET", "/api/Patient/1", &fhir);
    assert_eq!(
        e,
        RequestError::NotUnderBase {
            base: "/fhir".into()
        }
    );
    assert!(e.to_string().contains("`/fhir`"), "{e}");
    // The base must match whole segments.
    assert!(matches!(
        err("GET", "/fhirx/Patient/1", &fhir),
        RequestError::NotUnderBase { .. }
    ));

    let typo = RequestError::UnknownResourceType {
        segment: "Observaton".into(),
        suggestion: Some("Observation"),
    };
    assert_eq!(err("GET", "/fhir/Observaton/1", &fhir), typo);
    assert_eq!(err("GET", "/fhir/r4/Observaton/1", &auto), typo);
    assert_eq!(err("POST", "/fhir/r4/Observaton", &auto), typo);
    // A marker after the typo must not hide it.
    assert_eq!(err("GET", "/fhir/Observaton/1/_history", &auto), typo);
    assert_eq!(err("GET", "/fhir/Patient/1/Observaton", &fhir), typo);
    let msg = typo.to_string();
    assert!(
        msg.contains("`Observaton`") && msg.contains("`Observation`"),
        "{msg}"
    );
    assert_eq!(
        err("GET", "/fhir/Widget/1", &fhir),
        RequestError::UnknownResourceType {
            segment: "Widget".into(),
            suggestion: None
        }
    );

    for (method, path) in [
        ("POST", "/fhir/Patient/1"),
        ("DELETE", "/fhir"),
        ("PUT", "/fhir"),
        ("POST", "/fhir/metadata"),
        ("PUT", "/fhir/Observation/_history"),
        ("DELETE", "/fhir/Patient/1/_history"),
        ("POST", "/fhir/Patient/1/Observation"),
        ("DELETE", "/.well-known/smart-configuration"),
    ] {
        let e = err(method, path, &fhir);
        assert!(
            matches!(&e, RequestError::MethodNotAllowed { method: m, .. } if m == method),
            "{method} {path}: {e:?}"
        );
    }
    let e = err("post", "/fhir/Patient/1", &fhir);
    assert_eq!(
        e.to_string(),
        "POST is not valid on `[type]/[id]` (valid: GET, HEAD, PUT, PATCH, DELETE)"
    );

    assert_eq!(
        err("OPTIONS", "/fhir/Patient", &fhir),
        RequestError::UnsupportedMethod("OPTIONS".into())
    );
    assert_eq!(
        err("GET", "/fhir/Observation/1/Patient", &fhir),
        RequestError::NotACompartment {
            resource_type: "Observation".into()
        }
    );
    assert!(matches!(
        err("DELETE", "/fhir/Observation", &fhir),
        RequestError::UnrecognisedPath(_)
    ));
    assert!(matches!(
        err("GET", "/fhir/Patient/1/_history/2/extra", &fhir),
        RequestError::UnrecognisedPath(_)
    ));
    assert!(matches!(
        err("GET", "/fhir/Patient/_bogus", &fhir),
        RequestError::UnrecognisedPath(_)
    ));
    assert_eq!(err("GET", "/login", &auto), RequestError::NoResourceType);
    assert_eq!(
        err("GET", "/login?next=x", &auto),
        RequestError::NoResourceType
    );
}

#[test]
fn errors_do_not_carry_patient_ids() {
    let fhir = FhirBase::parse("/fhir").unwrap();
    for (method, path) in [
        ("GET", "/api/Patient/secret-42"),
        ("POST", "/fhir/Patient/secret-42"),
        ("GET", "/fhir/Patient/secret-42/_history/1/extra"),
    ] {
        let msg = err(method, path, &fhir).to_string();
        assert!(!msg.contains("secret-42"), "{msg}");
    }
}

#[test]
fn transaction_bundle_is_judged_entry_by_entry() {
    let bundle = serde_json::json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a",
                "resource": { "resourceType": "Patient" },
                "request": {
                    "method": "POST",
                    "url": "Patient",
                    "ifNoneExist": "identifier=http://hospital.example.org|123"
                }
            },
            {
                "resource": { "resourceType": "Observation" },
                "request": {
                    "method": "PUT",
                    "url": "Observation?identifier=http%3A%2F%2Flab%7Co-1&subject=Patient/123"
                }
            },
            {
                "request": {
                    "method": "GET",
                    "url": "https://ehr.example.org/fhir/r4/acme/Patient/123/Observation?code=8867-4"
                }
            },
            { "request": { "method": "DELETE", "url": "Observation/o9" } },
            { "resource": { "resourceType": "Basic" } }
        ]
    });

    for base in [
        FhirBase::parse("/fhir/r4/{tenant}").unwrap(),
        FhirBase::auto(),
    ] {
        let results = bundle_entries(&bundle, &base);
        assert_eq!(results.len(), 5, "{base}");
        let ok: Vec<&RequestNeed> = results[..4].iter().map(|r| r.as_ref().unwrap()).collect();

        assert_eq!(ok[0].interaction, Create);
        assert_eq!(ok[0].level, Type);
        assert_eq!(ok[0].resource_type.as_deref(), Some("Patient"));
        assert_eq!(ok[0].need.as_ref().unwrap().to_string(), "Patient.c");
        assert_eq!(ok[0].patient, None);

        assert_eq!(ok[1].interaction, Update);
        assert_eq!(ok[1].level, Type);
        assert_eq!(ok[1].need.as_ref().unwrap().to_string(), "Observation.u");
        assert_eq!(ok[1].patient.as_deref(), Some("123"));
        assert_eq!(
            ok[1].query[0],
            ("identifier".to_string(), "http://lab|o-1".to_string())
        );

        assert_eq!(ok[2].interaction, Search);
        assert_eq!(ok[2].resource_type.as_deref(), Some("Observation"));
        assert_eq!(ok[2].compartment.as_deref(), Some("Patient/123"));
        assert_eq!(ok[2].patient.as_deref(), Some("123"));
        assert_eq!(ok[2].need.as_ref().unwrap().to_string(), "Observation.s");

        assert_eq!(ok[3].interaction, Delete);
        assert_eq!(ok[3].level, Instance);
        assert_eq!(ok[3].id.as_deref(), Some("o9"));
        assert_eq!(ok[3].need.as_ref().unwrap().to_string(), "Observation.d");

        assert!(matches!(
            &results[4],
            Err(RequestError::BadBundleEntry { index: 4, .. })
        ));
    }

    // An absolute URL outside the configured base is an error for that entry only.
    let other = serde_json::json!({ "entry": [
        { "request": { "method": "GET", "url": "https://elsewhere.example.org/api/Patient/1" } },
        { "request": { "method": "GET", "url": "Patient/1" } }
    ]});
    let results = bundle_entries(&other, &FhirBase::parse("/fhir/r4/{tenant}").unwrap());
    assert!(matches!(results[0], Err(RequestError::NotUnderBase { .. })));
    assert_eq!(results[1].as_ref().unwrap().patient.as_deref(), Some("1"));

    assert!(bundle_entries(
        &serde_json::json!({"resourceType": "Bundle"}),
        &FhirBase::auto()
    )
    .is_empty());
}

#[test]
fn every_interaction_is_covered() {
    // Guards the tables above: each interaction is produced by some request.
    let samples = [
        ("GET", "/Patient/1"),
        ("GET", "/Patient/1/_history/1"),
        ("PUT", "/Patient/1"),
        ("PATCH", "/Patient/1"),
        ("DELETE", "/Patient/1"),
        ("GET", "/Patient/1/_history"),
        ("POST", "/Patient"),
        ("GET", "/Patient"),
        ("GET", "/Patient/1/$everything"),
        ("POST", "/"),
        ("GET", "/metadata"),
    ];
    let root = FhirBase::parse("/").unwrap();
    let got: Vec<Interaction> = samples
        .iter()
        .map(|(m, p)| classify(m, p, &root).unwrap().interaction)
        .collect();
    assert_eq!(got, Interaction::ALL.to_vec());
}
