use super::*;

use std::sync::Arc;

use serde_json::{Map, Value as Json};

fn params(v: Json) -> Map<String, Json> {
    v.as_object().cloned().unwrap()
}

fn tenant(n: usize) -> Arc<Tenant> {
    ExchangeData::new(n).tenant(
        "11111111-2222-3333-4444-555555555555",
        "contoso.onmicrosoft.com",
    )
}

#[test]
fn deterministic_per_tenant() {
    let a = tenant(20);
    let b = tenant(20);
    let ga = a
        .invoke(
            "Get-Mailbox",
            &params(serde_json::json!({"Identity": "user00012"})),
        )
        .unwrap();
    let gb = b
        .invoke(
            "get-mailbox",
            &params(serde_json::json!({"identity": "user00012"})),
        )
        .unwrap();
    assert_eq!(a.object(&ga.items[0]), b.object(&gb.items[0]));
    let other = ExchangeData::new(20).tenant("other", "fabrikam.onmicrosoft.com");
    let go = other
        .invoke(
            "Get-Mailbox",
            &params(serde_json::json!({"Identity": "user00012"})),
        )
        .unwrap();
    assert_ne!(
        a.object(&ga.items[0]).get("Guid"),
        other.object(&go.items[0]).get("Guid")
    );
}

#[test]
fn result_size_default_warning_and_unlimited() {
    let t = tenant(1500);
    let o = t.invoke("Get-Mailbox", &Map::new()).unwrap();
    assert_eq!(o.items.len(), 1000);
    assert_eq!(o.warnings, vec![MORE_RESULTS.to_string()]);
    let o = t
        .invoke(
            "Get-Mailbox",
            &params(serde_json::json!({"ResultSize": "Unlimited"})),
        )
        .unwrap();
    assert_eq!(o.items.len(), 1500);
    assert!(o.warnings.is_empty());
    let o = t
        .invoke(
            "Get-Mailbox",
            &params(serde_json::json!({"ResultSize": 10})),
        )
        .unwrap();
    assert_eq!(o.items.len(), 10);
    assert!(
        t.invoke(
            "Get-Mailbox",
            &params(serde_json::json!({"ResultSize": "lots"}))
        )
        .unwrap_err()
        .is_terminating()
    );
}

#[test]
fn unknown_identity_has_exchange_text() {
    let t = tenant(3);
    let e = t
        .invoke(
            "Get-Mailbox",
            &params(serde_json::json!({"Identity": "nosuchuser"})),
        )
        .unwrap_err();
    assert!(e.message.starts_with("The operation couldn't be performed because object 'nosuchuser' couldn't be found on 'AM0PR01MB"), "{}", e.message);
    assert_eq!(e.short_name(), "ManagementObjectNotFoundException");
    assert!(!e.is_terminating());
}

#[test]
fn set_then_get_shows_the_change_and_no_change_warns() {
    let t = tenant(3);
    let set = params(serde_json::json!({
        "Identity": "AdeleV", "CustomAttribute1": "x", "HiddenFromAddressListsEnabled": true,
        "EmailAddresses": {"@odata.type": "#Exchange.GenericHashTable", "Add": ["extra@contoso.com"]},
    }));
    assert!(t.invoke("Set-Mailbox", &set).unwrap().warnings.is_empty());
    let o = t
        .invoke(
            "Get-Mailbox",
            &params(serde_json::json!({"Identity": "adelev@contoso.com"})),
        )
        .unwrap();
    let obj = t.object(&o.items[0]);
    assert_eq!(obj.get("CustomAttribute1"), Some(&Prop::Str("x".into())));
    assert_eq!(
        obj.get("HiddenFromAddressListsEnabled"),
        Some(&Prop::Bool(true))
    );
    let Some(Prop::Multi(addrs)) = obj.get("EmailAddresses") else {
        panic!()
    };
    assert!(addrs.contains(&"smtp:extra@contoso.com".to_string()));
    let again = t.invoke("Set-Mailbox", &set).unwrap();
    assert_eq!(
        again.warnings,
        vec![
            "The command completed successfully but no settings of 'AdeleV' have been modified."
                .to_string()
        ]
    );
}

#[test]
fn unknown_parameter_and_cmdlet() {
    let t = tenant(1);
    let e = t
        .invoke("Get-Mailbox", &params(serde_json::json!({"Bogus": 1})))
        .unwrap_err();
    assert_eq!(
        e.message,
        "A parameter cannot be found that matches parameter name 'Bogus'."
    );
    assert!(e.is_terminating());
    assert!(
        t.invoke("Get-Nothing", &Map::new())
            .unwrap_err()
            .is_terminating()
    );
}

#[test]
fn filter_and_json_annotations() {
    let t = tenant(30);
    let o = t
        .invoke("Get-Mailbox", &params(serde_json::json!({"Filter": "CustomAttribute1 -eq 'Sales'", "ResultSize": "Unlimited"})))
        .unwrap();
    assert_eq!(o.items.len(), 15);
    let json = t.object(&o.items[0]).to_json();
    assert_eq!(json["Guid@data.type"], "System.Guid");
    assert_eq!(json["EmailAddresses@odata.type"], "#Collection(String)");
    assert_eq!(json["PitrCopyIntervalInSeconds@odata.type"], "#Int16");
    assert!(json["WhenCreatedUTC"].as_str().unwrap().ends_with('Z'));
    assert!(json["WhenCreated"].as_str().unwrap().ends_with("+00:00"));
    assert!(
        t.invoke(
            "Get-Mailbox",
            &params(serde_json::json!({"Filter": "nonsense"}))
        )
        .is_err()
    );
}
