//! Request-body validation against a Swagger 2.0 document's `definitions` (the subset Harbor's
//! swagger uses: `$ref`, `type`, `properties`, `items`, `additionalProperties`, `maxLength`,
//! `x-nullable`). Unknown properties are allowed, as Harbor's go-swagger server ignores them, and
//! a bare `type: object` (no `properties`, no `additionalProperties`) accepts any value: go-swagger
//! generates `interface{}` for it (e.g. RetentionRule.params values such as `{"latestPushedK": 10}`).

use serde_json::Value;

/// A parsed Swagger document.
pub struct Swagger {
    doc: Value,
}

impl Swagger {
    pub fn parse(yaml: &str) -> anyhow::Result<Self> {
        Ok(Self {
            doc: serde_saphyr::from_str(yaml)?,
        })
    }

    /// Errors of `body` against `#/definitions/<definition>` (empty when valid).
    pub fn validate(&self, definition: &str, body: &Value) -> Vec<String> {
        let mut errors = Vec::new();
        let schema = &self.doc["definitions"][definition];
        if schema.is_null() {
            errors.push(format!("no definition {definition}"));
        } else {
            self.check(schema, body, definition, &mut errors);
        }
        errors
    }

    fn check(&self, schema: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
        if let Some(reference) = schema["$ref"].as_str() {
            let name = reference.trim_start_matches("#/definitions/");
            self.check(&self.doc["definitions"][name], value, path, errors);
            return;
        }
        if value.is_null() {
            return; // absent or explicitly null: go-swagger treats both as unset
        }
        let kind = schema["type"].as_str();
        let free_form = kind == Some("object")
            && schema.get("properties").is_none()
            && schema.get("additionalProperties").is_none();
        if free_form {
            return;
        }
        let ok = match kind {
            Some("object") => value.is_object(),
            Some("array") => value.is_array(),
            Some("string") => value.is_string(),
            Some("integer") => value.is_i64() || value.is_u64(),
            Some("number") => value.is_number(),
            Some("boolean") => value.is_boolean(),
            _ => true,
        };
        if !ok {
            errors.push(format!(
                "{path}: expected {}, got {value}",
                kind.unwrap_or("?")
            ));
            return;
        }
        if let (Some(max), Some(text)) = (schema["maxLength"].as_u64(), value.as_str()) {
            if text.chars().count() as u64 > max {
                errors.push(format!("{path}: longer than {max}"));
            }
        }
        if let Some(object) = value.as_object() {
            let properties = schema["properties"].as_object();
            for (key, item) in object {
                match properties.and_then(|p| p.get(key)) {
                    Some(property) => self.check(property, item, &format!("{path}.{key}"), errors),
                    None if schema["additionalProperties"].is_object() => {
                        self.check(
                            &schema["additionalProperties"],
                            item,
                            &format!("{path}.{key}"),
                            errors,
                        );
                    }
                    None => {}
                }
            }
        }
        if let Some(items) = value.as_array() {
            for (i, item) in items.iter().enumerate() {
                self.check(&schema["items"], item, &format!("{path}[{i}]"), errors);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn harbor_metadata_values_must_be_strings() {
        let swagger = super::super::harbor::swagger();
        assert!(
            swagger
                .validate(
                    "ProjectReq",
                    &json!({"project_name": "p", "metadata": {"auto_scan": "true"}})
                )
                .is_empty()
        );
        let errors = swagger.validate(
            "ProjectReq",
            &json!({"project_name": "p", "metadata": {"auto_scan": true}}),
        );
        assert_eq!(
            errors,
            vec!["ProjectReq.metadata.auto_scan: expected string, got true"]
        );
        let errors = swagger.validate(
            "RobotCreate",
            &json!({"name": "x", "permissions": [{"access": [{"action": 1}]}]}),
        );
        assert_eq!(errors.len(), 1, "{errors:?}");
    }
}
