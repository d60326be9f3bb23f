//! The SMART scope algebra against every example of the SMART App Launch
//! "Scopes and Launch Context" pages (v2 and v1), plus property tests.

use proptest::prelude::*;
use scopewatch_model::scope::{
    covers, minimise, parse_scope_list, render_scope_list, Coverage, Filter, Required,
    ResourceScope, Scope, ScopeKind, ScopeVersion,
};
use scopewatch_model::{Context, Perms};

/// (scope, context, resource, letters, version) for every resource-scope
/// example on the v2 page, and the v1 page's examples.
const RESOURCE_EXAMPLES: &[(&str, &str, &str, &str, &str)] = &[
    // v2 page: the scope table and the "Clinical Scope Syntax" examples
    ("patient/*.rs", "patient", "*", "rs", "v2"),
    ("user/*.cruds", "user", "*", "cruds", "v2"),
    (
        "patient/Observation.cu",
        "patient",
        "Observation",
        "cu",
        "v2",
    ),
    (
        "patient/Observation.rs",
        "patient",
        "Observation",
        "rs",
        "v2",
    ),
    ("patient/Patient.r", "patient", "Patient", "r", "v2"),
    ("patient/Observation.c", "patient", "Observation", "c", "v2"),
    ("patient/*.cruds", "patient", "*", "cruds", "v2"),
    ("user/Observation.rs", "user", "Observation", "rs", "v2"),
    (
        "user/Appointment.cruds",
        "user",
        "Appointment",
        "cruds",
        "v2",
    ),
    ("user/Patient.rs", "user", "Patient", "rs", "v2"),
    ("system/Observation.rs", "system", "Observation", "rs", "v2"),
    ("system/*.rs", "system", "*", "rs", "v2"),
    ("system/Encounter.cud", "system", "Encounter", "cud", "v2"),
    (
        "patient/AllergyIntolerance.cruds",
        "patient",
        "AllergyIntolerance",
        "cruds",
        "v2",
    ),
    (
        "patient/AllergyIntolerance.rs",
        "patient",
        "AllergyIntolerance",
        "rs",
        "v2",
    ),
    (
        "patient/AllergyIntolerance.cud",
        "patient",
        "AllergyIntolerance",
        "cud",
        "v2",
    ),
    ("patient/Condition.rs", "patient", "Condition", "rs", "v2"),
    (
        "patient/Immunization.rs",
        "patient",
        "Immunization",
        "rs",
        "v2",
    ),
    // v1 page
    (
        "patient/Observation.read",
        "patient",
        "Observation",
        "rs",
        "v1",
    ),
    (
        "patient/Immunization.read",
        "patient",
        "Immunization",
        "rs",
        "v1",
    ),
    ("patient/*.read", "patient", "*", "rs", "v1"),
    ("patient/*.*", "patient", "*", "cruds", "v1"),
    ("user/*.*", "user", "*", "cruds", "v1"),
    ("user/Appointment.read", "user", "Appointment", "rs", "v1"),
    ("user/Appointment.*", "user", "Appointment", "cruds", "v1"),
    ("user/Observation.read", "user", "Observation", "rs", "v1"),
    ("user/*.read", "user", "*", "rs", "v1"),
    ("user/Patient.read", "user", "Patient", "rs", "v1"),
    (
        "patient/Observation.write",
        "patient",
        "Observation",
        "cud",
        "v1",
    ),
    ("user/*.write", "user", "*", "cud", "v1"),
    // URI representation from the v2 appendix
    (
        "http://smarthealthit.org/fhir/scopes/patient/*.r",
        "patient",
        "*",
        "r",
        "v2",
    ),
];

#[test]
fn every_resource_example_parses_to_its_meaning() {
    for (input, context, resource, letters, version) in RESOURCE_EXAMPLES {
        let scope = Scope::parse(input);
        let e = scope.explain();
        assert!(e.valid, "{input}: {:?}", e.error);
        assert_eq!(e.kind, "resource", "{input}");
        assert_eq!(e.context, Some(*context), "{input}");
        assert_eq!(e.resource.as_deref(), Some(*resource), "{input}");
        assert_eq!(e.permissions.as_deref(), Some(*letters), "{input}");
        assert_eq!(e.version, *version, "{input}");
        assert_eq!(e.filter, None, "{input}");
    }
}

#[test]
fn v1_semantics_in_v2() {
    // "v1 .read => v2 .rs; v1 .write => v2 .cud; v1 .* => v2 .cruds"
    for (v1, v2) in [
        ("patient/Observation.read", "patient/Observation.rs"),
        ("patient/Observation.write", "patient/Observation.cud"),
        ("patient/Observation.*", "patient/Observation.cruds"),
    ] {
        assert_eq!(Scope::parse(v1).normalised(), v2);
        assert_eq!(
            Scope::parse(v1).resource().unwrap().perms,
            Scope::parse(v2).resource().unwrap().perms
        );
        // v1 scopes render back as written
        assert_eq!(Scope::parse(v1).to_string(), v1);
    }
}

#[test]
fn granular_scopes_keep_their_filter() {
    let lab = "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory";
    let e = Scope::parse(lab).explain();
    assert!(e.valid);
    assert_eq!(e.resource.as_deref(), Some("Observation"));
    assert_eq!(e.permissions.as_deref(), Some("rs"));
    assert_eq!(
        e.filter.as_deref(),
        Some("category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory")
    );
    assert_eq!(Scope::parse(lab).to_string(), lab);

    // the experimental forms on the page: modifiers and chaining
    for s in [
        "patient/Observation.rs?code:in=http://valueset.example.org/ValueSet/diabetes-codes",
        "patient/Observation.rs?patient.birthdate=1990",
        "patient/Observation.rs?category=laboratory&status=final",
    ] {
        let scope = Scope::parse(s);
        assert!(scope.is_valid(), "{s}: {:?}", scope.error());
        assert_eq!(scope.to_string(), s);
    }
    // malformed filters
    for (s, why) in [
        ("patient/Observation.rs?", "empty filter"),
        ("patient/Observation.rs?category", "not `param=value`"),
        ("patient/Observation.rs?=x", "no parameter name"),
        ("patient/Observation.rs?category=", "no value"),
        (
            "patient/Observation.read?category=laboratory",
            "only in SMART v2",
        ),
    ] {
        let scope = Scope::parse(s);
        assert!(!scope.is_valid(), "{s}");
        assert!(
            scope.error().unwrap().contains(why),
            "{s}: {:?}",
            scope.error()
        );
    }
}

#[test]
fn launch_identity_and_refresh_scopes() {
    let cases: &[(&str, &str)] = &[
        ("launch", "launch"),
        ("launch/patient", "launch"),
        ("launch/encounter", "launch"),
        ("launch/imagingstudy", "launch"),
        ("launch/diagnosticreport", "launch"),
        (
            "launch/list?role=https://example.org/med-list-at-home",
            "launch",
        ),
        ("launch/relatedperson?role=friend", "launch"),
        ("openid", "identity"),
        ("fhirUser", "identity"),
        ("profile", "identity"),
        ("offline_access", "refresh"),
        ("online_access", "refresh"),
        ("__profilePhoto.manage", "extension"),
        (
            "https://ehr.example.org/scopes/profilePhoto.manage",
            "extension",
        ),
        (
            "http://openid.net/specs/openid-connect-core-1_0#openid",
            "identity",
        ),
    ];
    for (input, kind) in cases {
        let scope = Scope::parse(input);
        let e = scope.explain();
        assert!(e.valid, "{input}: {:?}", e.error);
        assert_eq!(e.kind, *kind, "{input}");
        assert_eq!(e.version, "none", "{input}");
        assert_eq!(e.context, None, "{input}");
    }
    let e = Scope::parse("launch/list?role=https://example.org/med-list-at-home").explain();
    assert_eq!(e.launch_context.as_deref(), Some("list"));
    assert_eq!(
        e.launch_role.as_deref(),
        Some("https://example.org/med-list-at-home")
    );
    assert_eq!(
        Scope::parse("launch/patient")
            .explain()
            .launch_context
            .as_deref(),
        Some("patient")
    );
    assert!(Scope::parse("offline_access").is_offline_access());

    // the page's extension example in a full scope string
    let list = parse_scope_list("launch/patient patient/*.rs __profilePhoto.manage");
    assert_eq!(list.len(), 3);
    assert!(list.iter().all(Scope::is_valid));
    assert_eq!(
        render_scope_list(&list),
        "launch/patient patient/*.rs __profilePhoto.manage"
    );
}

#[test]
fn invalid_scopes_are_kept_with_a_reason() {
    let cases: &[(&str, &str)] = &[
        // "a request of `.dus` is not a defined scope request"
        ("user/Patient.dus", "out of order"),
        ("patient/Observation.sr", "out of order"),
        ("patient/Observation.rr", "twice"),
        ("patient/Observation.crudss", "twice"),
        ("patient/Observation.", "no permission letters"),
        ("patient/Observation.rx", "not a permission"),
        ("patient/Observation.readwrite", "not a permission"),
        ("patient/Observation", "has no permissions"),
        ("patient/.rs", "missing resource type"),
        ("patient/observation.rs", "did you mean `Observation`"),
        ("patient/Foo.rs", "not a FHIR R4 resource type"),
        ("Patient/Observation.rs", "lower case"),
        ("group/Observation.rs", "unknown scope prefix"),
        ("launch/Patient", "lower case"),
        ("launch/", "needs a context"),
        ("launch/spaceship", "not a FHIR R4 resource type"),
        ("launch/list?role=a&b=c", "exactly one `role=...`"),
        ("FHIRUSER", "did you mean `fhirUser`"),
        ("Offline_Access", "did you mean `offline_access`"),
        ("", "empty"),
        ("patient/\"Observation\".rs", "not allowed"),
    ];
    for (input, why) in cases {
        let scope = Scope::parse(input);
        assert!(!scope.is_valid(), "{input} should be invalid");
        assert_eq!(scope.raw(), *input, "kept verbatim");
        assert_eq!(scope.to_string(), *input, "renders verbatim");
        let e = scope.explain();
        assert!(!e.valid);
        assert_eq!(e.kind, "invalid");
        let err = e.error.unwrap();
        assert!(err.contains(why), "{input}: {err}");
    }
    // a foreign but well-formed scope is kept and marked, not rejected
    let roles = Scope::parse("roles");
    assert!(roles.is_valid());
    assert_eq!(roles.kind_name(), "other");
}

#[test]
fn the_cli_example_from_the_issue() {
    let e: Vec<_> = [
        "patient/*.read",
        "patient/Observation.rs?category=laboratory",
        "user/Patient.dus",
    ]
    .iter()
    .map(|s| Scope::parse(s).explain())
    .collect();
    assert!(e[0].valid && e[0].version == "v1" && e[0].permissions.as_deref() == Some("rs"));
    assert!(e[1].valid && e[1].filter.as_deref() == Some("category=laboratory"));
    assert!(!e[2].valid && e[2].error.as_deref().unwrap().contains("out of order"));
}

fn req(s: &str) -> Required {
    Required::parse(s).unwrap()
}

fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn covers_follows_the_spec_grant_scenarios() {
    // The page's table: what was granted for a request of
    // patient/AllergyIntolerance.cruds, and what each grant allows.
    let read = req("patient/AllergyIntolerance.r");
    let create = req("patient/AllergyIntolerance.c");
    let cases: &[(&str, bool, bool)] = &[
        ("patient/AllergyIntolerance.cruds", true, true),
        (
            "patient/AllergyIntolerance.rs patient/AllergyIntolerance.cud",
            true,
            true,
        ),
        ("patient/AllergyIntolerance.rs", true, false),
        ("patient/AllergyIntolerance.cud", false, true),
        ("patient/*.rs", true, false),
        ("patient/*.cruds", true, true),
        ("patient/Observation.rs", false, false),
        ("user/AllergyIntolerance.cruds", false, false),
        ("patient/AllergyIntolerance.read", true, false),
        ("patient/AllergyIntolerance.write", false, true),
    ];
    for (granted, can_read, can_create) in cases {
        let g = parse_scope_list(granted);
        assert_eq!(
            covers(&g, &read, None).as_bool(),
            Some(*can_read),
            "{granted} / read"
        );
        assert_eq!(
            covers(&g, &create, None).as_bool(),
            Some(*can_create),
            "{granted} / create"
        );
    }
    // letters split over two scopes
    let g = parse_scope_list("patient/*.r patient/*.s");
    assert_eq!(
        covers(&g, &req("patient/*.rs"), None),
        Coverage::Covered(vec![0, 1])
    );
    // a typed grant never covers a need on every type
    let g = parse_scope_list("patient/Observation.rs");
    assert_eq!(covers(&g, &req("patient/*.s"), None), Coverage::NotCovered);
    // the most specific scope is named
    let g = parse_scope_list("patient/*.cruds patient/Observation.rs patient/Observation.r");
    assert_eq!(
        covers(&g, &req("patient/Observation.r"), None),
        Coverage::Covered(vec![2])
    );
}

#[test]
fn covers_judges_granular_filters_against_the_query() {
    let lab = "http://terminology.hl7.org/CodeSystem/observation-category|laboratory";
    let g = parse_scope_list(&format!("patient/Observation.rs?category={lab}"));
    let search = req("patient/Observation.s");
    assert_eq!(
        covers(&g, &search, Some(&q(&[("category", lab)]))).as_bool(),
        Some(true)
    );
    assert_eq!(
        covers(
            &g,
            &search,
            Some(&q(&[(
                "category",
                "http://terminology.hl7.org/CodeSystem/observation-category|vital-signs"
            )]))
        )
        .as_bool(),
        Some(false)
    );
    // the query does not say: the server has to look at the data
    assert_eq!(
        covers(&g, &search, Some(&q(&[("code", "1234-5")]))).as_bool(),
        None
    );
    assert_eq!(
        covers(&g, &req("patient/Observation.r"), None).as_bool(),
        None
    );
    // an unfiltered grant next to it settles the question
    let mut g2 = g.clone();
    g2.push(Scope::parse("patient/Observation.r"));
    assert_eq!(
        covers(&g2, &req("patient/Observation.r"), None),
        Coverage::Covered(vec![1])
    );
}

#[test]
fn minimise_gives_the_least_privilege_set() {
    let uses = parse_scope_list(
        "patient/Observation.r patient/Observation.s patient/Condition.r patient/Observation.r \
         launch openid fhirUser user/Patient.s patient/Observation.rs?category=laboratory bogus/x.r",
    );
    let m = minimise(&uses);
    assert_eq!(
        render_scope_list(&m.scopes),
        "fhirUser launch openid patient/Condition.r patient/Observation.rs user/Patient.s"
    );
    assert_eq!(m.rejected.len(), 1);
    assert_eq!(m.rejected[0].raw(), "bogus/x.r");
    // a wildcard use holds its letters for every type
    let m = minimise(&parse_scope_list("patient/*.rs patient/Observation.crs"));
    assert_eq!(
        render_scope_list(&m.scopes),
        "patient/*.rs patient/Observation.c"
    );
}

// ---------------------------------------------------------------------------
// Property tests

const TYPES: [&str; 3] = ["Observation", "Patient", "Condition"];

fn arb_context() -> impl Strategy<Value = Context> {
    prop::sample::select(Context::ALL.to_vec())
}

fn arb_perms() -> impl Strategy<Value = Perms> {
    (1u8..32).prop_map(Perms::from_bits)
}

fn arb_filter() -> impl Strategy<Value = Option<Filter>> {
    prop_oneof![
        3 => Just(None),
        1 => Just(Some(Filter::parse("category=laboratory").unwrap())),
        1 => Just(Some(Filter::parse("category=vital-signs").unwrap())),
    ]
}

fn arb_resource_scope() -> impl Strategy<Value = ResourceScope> {
    (
        arb_context(),
        prop::option::of(prop::sample::select(TYPES.to_vec())),
        arb_perms(),
        arb_filter(),
        any::<bool>(),
    )
        .prop_map(|(context, resource, perms, filter, v1)| {
            let v1_able =
                filter.is_none() && [Perms::READ, Perms::WRITE, Perms::ALL].contains(&perms);
            ResourceScope {
                context,
                resource: resource.map(str::to_string),
                perms,
                filter,
                version: if v1 && v1_able {
                    ScopeVersion::V1
                } else {
                    ScopeVersion::V2
                },
            }
        })
}

fn arb_scope() -> impl Strategy<Value = Scope> {
    prop_oneof![
        6 => arb_resource_scope().prop_map(Scope::from_resource),
        1 => prop::sample::select(vec![
            "launch", "launch/patient", "launch/encounter", "openid", "fhirUser", "profile",
            "offline_access", "online_access", "launch/list?role=home", "__custom.scope",
        ]).prop_map(Scope::parse),
    ]
}

fn arb_required() -> impl Strategy<Value = Required> {
    (
        arb_context(),
        prop::option::of(prop::sample::select(TYPES.to_vec())),
        arb_perms(),
    )
        .prop_map(|(context, resource, perms)| Required {
            context,
            resource: resource.map(str::to_string),
            perms,
        })
}

fn arb_query() -> impl Strategy<Value = Option<Vec<(String, String)>>> {
    prop_oneof![
        Just(None),
        Just(Some(vec![])),
        Just(Some(q(&[("category", "laboratory")]))),
        Just(Some(q(&[("category", "vital-signs")]))),
        Just(Some(q(&[("category", "laboratory,vital-signs")]))),
        Just(Some(q(&[("code", "1234")]))),
    ]
}

/// The brute-force model: expand every granted scope into the atoms
/// (context, type, letter) it grants over the small universe, each with its
/// filter, and look the needed atoms up one by one.
fn brute_force(
    granted: &[Scope],
    required: &Required,
    query: Option<&[(String, String)]>,
) -> Option<bool> {
    let universe: Vec<Option<&str>> = TYPES.iter().map(|t| Some(*t)).chain([None]).collect();
    let mut atoms: Vec<(Context, Option<&str>, char, Option<&Filter>)> = Vec::new();
    for scope in granted {
        let Some(r) = scope.resource() else { continue };
        for ty in &universe {
            // a wildcard grant reaches every type and "every type"; a typed grant reaches its own type only
            let reaches = match &r.resource {
                None => true,
                Some(t) => *ty == Some(t.as_str()),
            };
            if !reaches {
                continue;
            }
            for letter in "cruds".chars() {
                if r.perms.contains(Perms::from_letter(letter).unwrap()) {
                    atoms.push((r.context, *ty, letter, r.filter.as_ref()));
                }
            }
        }
    }
    let mut answer = Some(true);
    for letter in required.perms.letters().chars() {
        let matching: Vec<_> = atoms
            .iter()
            .filter(|(c, t, l, _)| {
                *c == required.context && *t == required.resource.as_deref() && *l == letter
            })
            .collect();
        let verdicts: Vec<Option<bool>> = matching
            .iter()
            .map(|(_, _, _, f)| match (f, query) {
                (None, _) => Some(true),
                (Some(_), None) => None,
                (Some(f), Some(q)) => {
                    // filter holds when every filter param is in the query with
                    // only the filter's value; contradicted when present with others
                    let mut result = Some(true);
                    for (name, value) in f.params() {
                        let present = q.iter().any(|(n, _)| n == name);
                        let exact = q
                            .iter()
                            .any(|(n, v)| n == name && v.split(',').all(|a| a == value));
                        if present && !exact {
                            return Some(false);
                        }
                        if !exact {
                            result = None;
                        }
                    }
                    result
                }
            })
            .collect();
        let letter_verdict = if verdicts.contains(&Some(true)) {
            Some(true)
        } else if verdicts.contains(&None) {
            None
        } else {
            Some(false)
        };
        answer = match (answer, letter_verdict) {
            (_, Some(false)) | (Some(false), _) => Some(false),
            (None, _) | (_, None) => None,
            _ => Some(true),
        };
    }
    answer
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn parse_render_round_trips(scope in arb_scope()) {
        let rendered = scope.to_string();
        let reparsed = Scope::parse(&rendered);
        prop_assert!(reparsed.is_valid(), "{rendered}: {:?}", reparsed.error());
        prop_assert_eq!(reparsed.kind(), scope.kind());
        prop_assert_eq!(reparsed.to_string(), rendered);
    }

    #[test]
    fn normalised_form_means_the_same(scope in arb_scope()) {
        let normal = Scope::parse(&scope.normalised());
        match (scope.kind(), normal.kind()) {
            (ScopeKind::Resource(a), ScopeKind::Resource(b)) => {
                prop_assert_eq!(a.context, b.context);
                prop_assert_eq!(&a.resource, &b.resource);
                prop_assert_eq!(a.perms, b.perms);
                prop_assert_eq!(&a.filter, &b.filter);
                prop_assert_eq!(b.version, ScopeVersion::V2);
            }
            (a, b) => prop_assert_eq!(a, b),
        }
    }

    #[test]
    fn covers_agrees_with_brute_force(
        granted in prop::collection::vec(arb_scope(), 0..6),
        required in arb_required(),
        query in arb_query(),
    ) {
        let got = covers(&granted, &required, query.as_deref());
        let want = brute_force(&granted, &required, query.as_deref());
        prop_assert_eq!(got.as_bool(), want, "granted {}, required {}", render_scope_list(&granted), required);
        // every scope it names can really cover one of the letters
        for i in got.scopes() {
            let r = granted[*i].resource().unwrap();
            prop_assert_eq!(r.context, required.context);
            prop_assert!(!r.perms.intersection(required.perms).is_empty());
        }
    }

    #[test]
    fn minimise_covers_every_use_and_grants_nothing_more(
        uses in prop::collection::vec(arb_resource_scope().prop_map(|mut r| { r.filter = None; Scope::from_resource(r) }), 1..10),
        probe in arb_required(),
    ) {
        let m = minimise(&uses);
        prop_assert!(m.rejected.is_empty());
        // covers every use
        for u in &uses {
            let r = u.resource().unwrap();
            let need = Required { context: r.context, resource: r.resource.clone(), perms: r.perms };
            prop_assert_eq!(covers(&m.scopes, &need, None).as_bool(), Some(true), "use {} not covered by {}", u, render_scope_list(&m.scopes));
        }
        // grants nothing the uses did not: any probe the result covers, the uses cover
        if covers(&m.scopes, &probe, None).as_bool() == Some(true) {
            prop_assert_eq!(covers(&uses, &probe, None).as_bool(), Some(true));
        }
        // never longer than the distinct (context, type) pairs used
        let mut keys: Vec<_> = uses.iter().map(|u| { let r = u.resource().unwrap(); (r.context, r.resource.clone()) }).collect();
        keys.sort();
        keys.dedup();
        prop_assert!(m.scopes.len() <= keys.len());
        // and applying it again changes nothing
        prop_assert_eq!(minimise(&m.scopes).scopes, m.scopes.clone());
    }
}
