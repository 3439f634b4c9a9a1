//! The shape of Graph's `signIn` resource per API version, from Microsoft's published metadata.
//!
//! The lists below are derived from the CSDL excerpts vendored in `metadata/`
//! (microsoftgraph/msgraph-metadata at [`METADATA_COMMIT`], `schemas/beta-Prod.csdl` and
//! `schemas/v1.0-Prod.csdl`); the test at the bottom derives them again from those files and
//! fails, printing the lists to paste, when they differ. The fake serves a beta answer with exactly
//! [`BETA_PROPERTIES`] and a v1.0 answer with exactly [`V1_PROPERTIES`] (each record carries the
//! union; [`BETA_ONLY`] and [`V1_ONLY`] are left out of the other version).

/// The msgraph-metadata commit the excerpts (and these lists) come from.
pub const METADATA_COMMIT: &str = "0564689b82afc308d5aa8be54edfb9e5f1e0539f";

/// `id` (from `graph.entity`) and every property of `signIn` in `beta-Prod.csdl`, in CSDL order.
pub const BETA_PROPERTIES: [&str; 77] = [
    "id",
    "agent",
    "appDisplayName",
    "appId",
    "appliedConditionalAccessPolicies",
    "appliedEventListeners",
    "appOwnerTenantId",
    "appTokenProtectionStatus",
    "authenticationAppDeviceDetails",
    "authenticationAppPolicyEvaluationDetails",
    "authenticationContextClassReferences",
    "authenticationDetails",
    "authenticationMethodsUsed",
    "authenticationProcessingDetails",
    "authenticationProtocol",
    "authenticationRequirement",
    "authenticationRequirementPolicies",
    "autonomousSystemNumber",
    "azureResourceId",
    "clientAppUsed",
    "clientCredentialType",
    "clientSessionId",
    "conditionalAccessAudiences",
    "conditionalAccessStatus",
    "correlationId",
    "createdDateTime",
    "crossTenantAccessType",
    "deviceDetail",
    "federatedCredentialId",
    "flaggedForReview",
    "globalSecureAccessIpAddress",
    "homeTenantId",
    "homeTenantName",
    "incomingTokenType",
    "ipAddress",
    "ipAddressFromResourceProvider",
    "isInteractive",
    "isTenantRestricted",
    "isThroughGlobalSecureAccess",
    "location",
    "managedServiceIdentity",
    "mfaDetail",
    "networkLocationDetails",
    "originalRequestId",
    "originalTransferMethod",
    "privateLinkDetails",
    "processingTimeInMilliseconds",
    "resourceDisplayName",
    "resourceId",
    "resourceOwnerTenantId",
    "resourceServicePrincipalId",
    "resourceTenantId",
    "riskDetail",
    "riskEventTypes_v2",
    "riskLevelAggregated",
    "riskLevelDuringSignIn",
    "riskState",
    "servicePrincipalCredentialKeyId",
    "servicePrincipalCredentialThumbprint",
    "servicePrincipalId",
    "servicePrincipalName",
    "sessionId",
    "sessionLifetimePolicies",
    "signInEventTypes",
    "signInIdentifier",
    "signInIdentifierType",
    "signInTokenProtectionStatus",
    "status",
    "tokenIssuerName",
    "tokenIssuerType",
    "tokenProtectionStatusDetails",
    "uniqueTokenIdentifier",
    "userAgent",
    "userDisplayName",
    "userId",
    "userPrincipalName",
    "userType",
];

/// `id` and every property of `signIn` in `v1.0-Prod.csdl`, in CSDL order.
pub const V1_PROPERTIES: [&str; 30] = [
    "id",
    "appDisplayName",
    "appId",
    "appliedConditionalAccessPolicies",
    "authenticationAppDeviceDetails",
    "clientAppUsed",
    "conditionalAccessStatus",
    "correlationId",
    "createdDateTime",
    "deviceDetail",
    "homeTenantId",
    "ipAddress",
    "isInteractive",
    "location",
    "resourceDisplayName",
    "resourceId",
    "resourceTenantId",
    "riskDetail",
    "riskEventTypes",
    "riskEventTypes_v2",
    "riskLevelAggregated",
    "riskLevelDuringSignIn",
    "riskState",
    "servicePrincipalId",
    "servicePrincipalName",
    "status",
    "userAgent",
    "userDisplayName",
    "userId",
    "userPrincipalName",
];

/// [`BETA_PROPERTIES`] that v1.0 does not have: a v1.0 answer leaves them out.
pub const BETA_ONLY: [&str; 48] = [
    "agent",
    "appliedEventListeners",
    "appOwnerTenantId",
    "appTokenProtectionStatus",
    "authenticationAppPolicyEvaluationDetails",
    "authenticationContextClassReferences",
    "authenticationDetails",
    "authenticationMethodsUsed",
    "authenticationProcessingDetails",
    "authenticationProtocol",
    "authenticationRequirement",
    "authenticationRequirementPolicies",
    "autonomousSystemNumber",
    "azureResourceId",
    "clientCredentialType",
    "clientSessionId",
    "conditionalAccessAudiences",
    "crossTenantAccessType",
    "federatedCredentialId",
    "flaggedForReview",
    "globalSecureAccessIpAddress",
    "homeTenantName",
    "incomingTokenType",
    "ipAddressFromResourceProvider",
    "isTenantRestricted",
    "isThroughGlobalSecureAccess",
    "managedServiceIdentity",
    "mfaDetail",
    "networkLocationDetails",
    "originalRequestId",
    "originalTransferMethod",
    "privateLinkDetails",
    "processingTimeInMilliseconds",
    "resourceOwnerTenantId",
    "resourceServicePrincipalId",
    "servicePrincipalCredentialKeyId",
    "servicePrincipalCredentialThumbprint",
    "sessionId",
    "sessionLifetimePolicies",
    "signInEventTypes",
    "signInIdentifier",
    "signInIdentifierType",
    "signInTokenProtectionStatus",
    "tokenIssuerName",
    "tokenIssuerType",
    "tokenProtectionStatusDetails",
    "uniqueTokenIdentifier",
    "userType",
];

/// [`V1_PROPERTIES`] that beta does not have (beta has only `riskEventTypes_v2`): a beta answer
/// leaves them out.
pub const V1_ONLY: [&str; 1] = ["riskEventTypes"];

/// Members of nested objects that only beta has, by the `signIn` property holding the object (or
/// the array of them): a v1.0 answer leaves them out of those objects. (The other complex types
/// both versions share, `signInLocation`, `geoCoordinates`, `signInStatus` and
/// `authenticationAppDeviceDetails`, have the same members in both, per the same commit's
/// `schemas/type-mappings/*-complex-types.json`.)
pub const BETA_ONLY_NESTED: [(&str, &[&str]); 2] = [
    (
        "appliedConditionalAccessPolicies",
        &[
            "authenticationStrength",
            "conditionsNotSatisfied",
            "conditionsSatisfied",
            "excludeRulesSatisfied",
            "includeRulesSatisfied",
            "sessionControlsNotSatisfied",
        ],
    ),
    ("deviceDetail", &["browserId"]),
];

/// Beta properties whose type is an enum the CSDL marks `IsFlags="true"`: Graph sends several
/// members comma-joined in one string (OData JSON format, `enumValue` rule).
pub const FLAGS_PROPERTIES: [&str; 3] = [
    "authenticationProtocol",
    "crossTenantAccessType",
    "incomingTokenType",
];

#[cfg(test)]
mod tests {
    use super::*;

    const BETA_XML: &str = include_str!("../metadata/beta-Prod.signIn.xml");
    const V1_XML: &str = include_str!("../metadata/v1.0-Prod.signIn.xml");

    /// The value of `attribute="…"` in one XML start tag.
    fn attribute<'a>(tag: &'a str, attribute: &str) -> Option<&'a str> {
        let start = tag.find(&format!(" {attribute}=\""))? + attribute.len() + 3;
        let len = tag[start..].find('"')?;
        Some(&tag[start..start + len])
    }

    /// One excerpt, read: the `signIn` properties (id first) with their types (`graph.`, and
    /// `Collection(…)` removed), the flags-enum properties, and the members of each complex type.
    struct Excerpt {
        properties: Vec<(String, String)>,
        flags: Vec<String>,
        complex: Vec<(String, Vec<String>)>,
    }

    fn derive(xml: &str) -> Excerpt {
        let (entity, enums) = xml
            .split_once("</EntityType>")
            .expect("the excerpt has the signIn entity type");
        assert!(entity.contains("<EntityType Name=\"signIn\" BaseType=\"graph.entity\">"));
        let flags: Vec<&str> = enums
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("<EnumType ") && attribute(l, "IsFlags") == Some("true"))
            .filter_map(|l| attribute(l, "Name"))
            .collect();
        let property = |line: &str| {
            let name = attribute(line, "Name").expect("a property has a name");
            let ty = attribute(line, "Type").expect("a property has a type");
            let ty = ty
                .trim_start_matches("Collection(")
                .trim_end_matches(')')
                .trim_start_matches("graph.");
            (name.to_owned(), ty.to_owned())
        };
        let mut properties = vec![("id".to_owned(), "Edm.String".to_owned())];
        properties.extend(
            entity
                .lines()
                .map(str::trim)
                .filter(|l| l.starts_with("<Property "))
                .map(property),
        );
        let flags = properties
            .iter()
            .filter(|(_, ty)| flags.contains(&ty.as_str()))
            .map(|(name, _)| name.clone())
            .collect();
        let mut complex: Vec<(String, Vec<String>)> = Vec::new();
        for line in enums.lines().map(str::trim) {
            if line.starts_with("<ComplexType ") {
                let name = attribute(line, "Name").expect("a complex type has a name");
                complex.push((name.to_owned(), Vec::new()));
            } else if line.starts_with("<Property ") {
                let (name, _) = property(line);
                complex
                    .last_mut()
                    .expect("inside a complex type")
                    .1
                    .push(name);
            }
        }
        Excerpt {
            properties,
            flags,
            complex,
        }
    }

    fn render(name: &str, items: &[String]) -> String {
        let mut out = format!("pub const {name}: [&str; {}] = [\n", items.len());
        for item in items {
            out.push_str(&format!("    \"{item}\",\n"));
        }
        out.push_str("];\n");
        out
    }

    #[test]
    fn schema_lists_are_the_vendored_csdl() {
        let (beta_xml, v1_xml) = (derive(BETA_XML), derive(V1_XML));
        let names =
            |e: &Excerpt| -> Vec<String> { e.properties.iter().map(|p| p.0.clone()).collect() };
        let (beta, v1) = (names(&beta_xml), names(&v1_xml));
        let flags = beta_xml.flags.clone();
        let beta_only: Vec<String> = beta.iter().filter(|p| !v1.contains(p)).cloned().collect();
        let v1_only: Vec<String> = v1.iter().filter(|p| !beta.contains(p)).cloned().collect();
        let expected = [
            ("BETA_PROPERTIES", &beta, &BETA_PROPERTIES[..]),
            ("V1_PROPERTIES", &v1, &V1_PROPERTIES[..]),
            ("BETA_ONLY", &beta_only, &BETA_ONLY[..]),
            ("V1_ONLY", &v1_only, &V1_ONLY[..]),
            ("FLAGS_PROPERTIES", &flags, &FLAGS_PROPERTIES[..]),
        ];
        for (name, derived, listed) in expected {
            assert_eq!(
                derived,
                listed,
                "{name} differs from the vendored CSDL; paste:\n{}",
                render(name, derived)
            );
        }
        assert!(v1_xml.flags.is_empty(), "v1.0 has no flags property");
        // Nested: the members of each complex type both excerpts hold that v1.0 lacks, by the
        // signIn property of that type.
        let mut nested: Vec<(String, Vec<String>)> = Vec::new();
        for (ty, beta_members) in &beta_xml.complex {
            let (_, v1_members) = v1_xml
                .complex
                .iter()
                .find(|(name, _)| name == ty)
                .expect("both excerpts hold the same complex types");
            let only: Vec<String> = beta_members
                .iter()
                .filter(|m| !v1_members.contains(m))
                .cloned()
                .collect();
            for (property, _) in beta_xml.properties.iter().filter(|(_, t)| t == ty) {
                nested.push((property.clone(), only.clone()));
            }
        }
        nested.sort();
        let listed: Vec<(String, Vec<String>)> = BETA_ONLY_NESTED
            .iter()
            .map(|(p, m)| ((*p).to_owned(), m.iter().map(|s| (*s).to_owned()).collect()))
            .collect();
        assert_eq!(
            nested, listed,
            "BETA_ONLY_NESTED differs from the vendored CSDL"
        );
        for excerpt in [BETA_XML, V1_XML] {
            assert!(
                excerpt.contains(METADATA_COMMIT),
                "the excerpt names the commit"
            );
        }
    }
}
