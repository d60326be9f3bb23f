//! The FHIR R4 (4.0.1) resource types. Request paths and scopes are checked
//! against this list, so a FHIR base under any prefix is recognised by the
//! first segment that names a real type, not by its position.

/// Every resource type of FHIR R4 4.0.1, sorted for binary search.
pub const R4_RESOURCE_TYPES: &[&str] = &[
    "Account",
    "ActivityDefinition",
    "AdverseEvent",
    "AllergyIntolerance",
    "Appointment",
    "AppointmentResponse",
    "AuditEvent",
    "Basic",
    "Binary",
    "BiologicallyDerivedProduct",
    "BodyStructure",
    "Bundle",
    "CapabilityStatement",
    "CarePlan",
    "CareTeam",
    "CatalogEntry",
    "ChargeItem",
    "ChargeItemDefinition",
    "Claim",
    "ClaimResponse",
    "ClinicalImpression",
    "CodeSystem",
    "Communication",
    "CommunicationRequest",
    "CompartmentDefinition",
    "Composition",
    "ConceptMap",
    "Condition",
    "Consent",
    "Contract",
    "Coverage",
    "CoverageEligibilityRequest",
    "CoverageEligibilityResponse",
    "DetectedIssue",
    "Device",
    "DeviceDefinition",
    "DeviceMetric",
    "DeviceRequest",
    "DeviceUseStatement",
    "DiagnosticReport",
    "DocumentManifest",
    "DocumentReference",
    "EffectEvidenceSynthesis",
    "Encounter",
    "Endpoint",
    "EnrollmentRequest",
    "EnrollmentResponse",
    "EpisodeOfCare",
    "EventDefinition",
    "Evidence",
    "EvidenceVariable",
    "ExampleScenario",
    "ExplanationOfBenefit",
    "FamilyMemberHistory",
    "Flag",
    "Goal",
    "GraphDefinition",
    "Group",
    "GuidanceResponse",
    "HealthcareService",
    "ImagingStudy",
    "Immunization",
    "ImmunizationEvaluation",
    "ImmunizationRecommendation",
    "ImplementationGuide",
    "InsurancePlan",
    "Invoice",
    "Library",
    "Linkage",
    "List",
    "Location",
    "Measure",
    "MeasureReport",
    "Media",
    "Medication",
    "MedicationAdministration",
    "MedicationDispense",
    "MedicationKnowledge",
    "MedicationRequest",
    "MedicationStatement",
    "MedicinalProduct",
    "MedicinalProductAuthorization",
    "MedicinalProductContraindication",
    "MedicinalProductIndication",
    "MedicinalProductIngredient",
    "MedicinalProductInteraction",
    "MedicinalProductManufactured",
    "MedicinalProductPackaged",
    "MedicinalProductPharmaceutical",
    "MedicinalProductUndesirableEffect",
    "MessageDefinition",
    "MessageHeader",
    "MolecularSequence",
    "NamingSystem",
    "NutritionOrder",
    "Observation",
    "ObservationDefinition",
    "OperationDefinition",
    "OperationOutcome",
    "Organization",
    "OrganizationAffiliation",
    "Parameters",
    "Patient",
    "PaymentNotice",
    "PaymentReconciliation",
    "Person",
    "PlanDefinition",
    "Practitioner",
    "PractitionerRole",
    "Procedure",
    "Provenance",
    "Questionnaire",
    "QuestionnaireResponse",
    "RelatedPerson",
    "RequestGroup",
    "ResearchDefinition",
    "ResearchElementDefinition",
    "ResearchStudy",
    "ResearchSubject",
    "RiskAssessment",
    "RiskEvidenceSynthesis",
    "Schedule",
    "SearchParameter",
    "ServiceRequest",
    "Slot",
    "Specimen",
    "SpecimenDefinition",
    "StructureDefinition",
    "StructureMap",
    "Subscription",
    "Substance",
    "SubstanceNucleicAcid",
    "SubstancePolymer",
    "SubstanceProtein",
    "SubstanceReferenceInformation",
    "SubstanceSourceMaterial",
    "SubstanceSpecification",
    "SupplyDelivery",
    "SupplyRequest",
    "Task",
    "TerminologyCapabilities",
    "TestReport",
    "TestScript",
    "ValueSet",
    "VerificationResult",
    "VisionPrescription",
];

/// The resource types that define a compartment in R4; a path such as
/// `Patient/1/Observation` is a compartment search only under one of these.
pub const R4_COMPARTMENT_TYPES: &[&str] = &[
    "Device",
    "Encounter",
    "Patient",
    "Practitioner",
    "RelatedPerson",
];

/// Whether `name` is an R4 resource type (case-sensitive, as FHIR is).
pub fn is_r4_resource_type(name: &str) -> bool {
    // Called on several path segments of every request line (it was 7 % of
    // ingest's time as a binary search): most segments are rejected by their
    // first letter, the rest compared only with the few types of that letter
    // and length.
    let Some(&first) = name.as_bytes().first() else {
        return false;
    };
    if !first.is_ascii_uppercase() {
        return false;
    }
    let (start, end) = TYPES_BY_INITIAL[usize::from(first - b'A')];
    R4_RESOURCE_TYPES[start..end]
        .iter()
        .any(|t| t.len() == name.len() && *t == name)
}

/// For each initial `A`..=`Z`, the range of [`R4_RESOURCE_TYPES`] (sorted)
/// starting with it.
static TYPES_BY_INITIAL: std::sync::LazyLock<[(usize, usize); 26]> =
    std::sync::LazyLock::new(|| {
        let mut ranges = [(0, 0); 26];
        for (i, range) in ranges.iter_mut().enumerate() {
            let initial = b'A' + i as u8;
            let start = R4_RESOURCE_TYPES.partition_point(|t| t.as_bytes()[0] < initial);
            let end = R4_RESOURCE_TYPES.partition_point(|t| t.as_bytes()[0] <= initial);
            *range = (start, end);
        }
        ranges
    });

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_is_sorted_and_complete() {
        let mut sorted = R4_RESOURCE_TYPES.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(
            sorted, R4_RESOURCE_TYPES,
            "must stay sorted and unique for binary search"
        );
        // R4 4.0.1's ResourceType value set has 148 codes; Resource and
        // DomainResource are abstract and never appear in a URL.
        assert_eq!(R4_RESOURCE_TYPES.len(), 146);
        assert!(is_r4_resource_type("Observation"));
        assert!(!is_r4_resource_type("observation"));
        assert!(!is_r4_resource_type("metadata"));
        for t in R4_RESOURCE_TYPES {
            assert!(is_r4_resource_type(t), "{t}");
            assert!(!is_r4_resource_type(&t[..t.len() - 1]), "{t} cut short");
            assert!(!is_r4_resource_type(&format!("{t}s")), "{t} lengthened");
        }
        for not in [
            "",
            "A",
            "Z",
            "Zebra",
            "Observaton",
            "_history",
            "$export",
            "\u{e9}",
        ] {
            assert!(!is_r4_resource_type(not), "{not}");
        }
    }
}
