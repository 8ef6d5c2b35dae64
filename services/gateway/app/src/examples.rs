//! The examples of `/openapi.json` (every dialect's) match their schemas: an example
//! that does not fit misleads every reader of the reference and every client generated
//! from it.

use serde_json::{Value, json};

/// Every `example` of a request or response body in the document, with where it
/// is and its schema.
fn examples(doc: &Value) -> Vec<(String, Value, Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for (method, operation) in item.as_object().into_iter().flatten() {
            let mut bodies: Vec<(String, &Value)> =
                vec![(format!("{method} {path} request"), &operation["requestBody"]["content"])];
            for (status, response) in operation["responses"].as_object().into_iter().flatten() {
                bodies.push((format!("{method} {path} {status}"), &response["content"]));
            }
            for (at, content) in bodies {
                for (media_type, media) in content.as_object().into_iter().flatten() {
                    if let Some(example) = media.get("example") {
                        out.push((format!("{at} {media_type}"), media["schema"].clone(), example.clone()));
                    }
                }
            }
        }
    }
    out
}

/// What does not fit: `"<where>: <error>"`.
fn mismatches(doc: &Value) -> anyhow::Result<Vec<String>> {
    let mut failures = Vec::new();
    for (at, schema, example) in examples(doc) {
        // The schema, with the components its `$ref`s point into.
        let mut root = json!({"components": doc["components"].clone()});
        if let (Some(root), Some(schema)) = (root.as_object_mut(), schema.as_object()) {
            root.extend(schema.clone());
        }
        let validator = jsonschema::draft202012::new(&root).map_err(|e| anyhow::anyhow!("{at}: {e}"))?;
        for error in validator.iter_errors(&example) {
            failures.push(format!("{at}: {error} at {}", error.instance_path()));
        }
    }
    Ok(failures)
}

fn document() -> anyhow::Result<Value> {
    let config = crate::Config { dev_login: Some(chat_domain::ids::TenantId::parse("dev")?), ..Default::default() };
    let attachments = gateway_core::attachments::Attachments::open(&config.attachments)?;
    let routes = crate::routes::Routes {
        dialects: crate::dialects(&config, &attachments).into(),
        statics: None,
        check: std::sync::Arc::new(|| Box::pin(async { true })),
    };
    Ok(crate::routes::document(&routes))
}

/// An example that does not fit its schema misleads every reader of the reference
/// (and every client generated from it).
#[test]
fn every_example_matches_its_schema() -> anyhow::Result<()> {
    let doc = document()?;
    let count = examples(&doc).len();
    assert!(count >= 10, "the main operations have examples; found {count}");
    let failures = mismatches(&doc)?;
    assert!(failures.is_empty(), "{failures:#?}");
    Ok(())
}

#[test]
fn an_example_that_does_not_fit_is_caught() -> anyhow::Result<()> {
    let mut doc = document()?;
    let example = doc
        .pointer_mut("/paths/~1rooms/post/responses/201/content/application~1json/example/type")
        .ok_or_else(|| anyhow::anyhow!("POST /rooms has a 201 example with a type"))?;
    *example = json!("lobby");
    let failures = mismatches(&doc)?;
    assert_eq!(failures.len(), 1, "{failures:#?}");
    assert!(failures[0].starts_with("post /rooms 201"), "{failures:#?}");
    Ok(())
}
