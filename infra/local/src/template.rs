//! `template.yaml` as the deployment declares it: each function (by its crate) and the actions
//! its role's `Ports` policy grants. The local stack gives each function an identity with
//! these actions; the template test holds them to the code.

use std::collections::{BTreeMap, BTreeSet};

use serde_yaml_ng::Value;

/// The template this build was made with.
pub const TEMPLATE: &str = include_str!("../../../template.yaml");

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("template.yaml does not parse: {0}")]
    Parse(#[from] serde_yaml_ng::Error),
    #[error("template.yaml: {0}")]
    Shape(String),
}

pub fn parse(text: &str) -> Result<Value, TemplateError> {
    Ok(serde_yaml_ng::from_str(text)?)
}

/// A plain value, or the value inside a CloudFormation tag (`!Ref X`, `!GetAtt X.Arn`).
pub fn untagged(value: &Value) -> &Value {
    match value {
        Value::Tagged(tagged) => &tagged.value,
        other => other,
    }
}

pub fn str_of(value: &Value) -> &str {
    untagged(value).as_str().unwrap_or_default()
}

/// Each function's crate (named by its `CodeUri`, `build/lambda/<crate>/bootstrap.zip`) and
/// its resource.
pub fn functions(template: &Value) -> Result<BTreeMap<String, &Value>, TemplateError> {
    let resources = template["Resources"]
        .as_mapping()
        .ok_or_else(|| TemplateError::Shape("no Resources".into()))?;
    resources
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::Serverless::Function")
        .map(|(id, r)| {
            let code = str_of(&r["Properties"]["CodeUri"]);
            let name = code
                .strip_prefix("build/lambda/")
                .and_then(|rest| rest.strip_suffix("/bootstrap.zip"))
                .ok_or_else(|| {
                    TemplateError::Shape(format!(
                        "{id:?}: CodeUri {code} is not a `make package` zip"
                    ))
                })?;
            Ok((name.to_owned(), r))
        })
        .collect()
}

/// The statements of the `Ports` policy of `function`'s role.
pub fn ports_statements<'t>(
    template: &'t Value,
    function: &Value,
) -> Result<&'t [Value], TemplateError> {
    let role_id = str_of(&function["Properties"]["Role"])
        .strip_suffix(".Arn")
        .ok_or_else(|| {
            TemplateError::Shape(
                "each function names its own role: Role: !GetAtt <Role>.Arn".into(),
            )
        })?;
    let role = &template["Resources"][role_id];
    let ports = role["Properties"]["Policies"]
        .as_sequence()
        .and_then(|policies| policies.iter().find(|p| p["PolicyName"] == "Ports"))
        .ok_or_else(|| TemplateError::Shape(format!("{role_id} has no Ports policy")))?;
    ports["PolicyDocument"]["Statement"]
        .as_sequence()
        .map(Vec::as_slice)
        .ok_or_else(|| TemplateError::Shape(format!("{role_id}: Ports has no statements")))
}

/// The actions of the `Ports` policy of `function`'s role.
pub fn granted(template: &Value, function: &Value) -> Result<BTreeSet<String>, TemplateError> {
    let mut actions = BTreeSet::new();
    for statement in ports_statements(template, function)? {
        if statement["Effect"] != "Allow" {
            return Err(TemplateError::Shape(format!(
                "{}: only Allow statements are expected in Ports",
                str_of(&function["Properties"]["Role"]).trim_end_matches(".Arn")
            )));
        }
        match &statement["Action"] {
            Value::Sequence(list) => actions.extend(list.iter().map(|a| str_of(a).to_owned())),
            single => {
                actions.insert(str_of(single).to_owned());
            }
        }
    }
    Ok(actions)
}

/// Every function's granted actions, by crate name.
pub fn policies(template: &Value) -> Result<BTreeMap<String, BTreeSet<String>>, TemplateError> {
    functions(template)?
        .into_iter()
        .map(|(name, function)| Ok((name, granted(template, function)?)))
        .collect()
}

/// The HTTP API's CORS configuration, as API Gateway applies it: the origins are the
/// `CorsAllowOrigins` parameter, which the local gateway takes from `CORS_ALLOW_ORIGINS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cors {
    pub allow_methods: Vec<String>,
    pub allow_headers: Vec<String>,
    pub expose_headers: Vec<String>,
    pub max_age: u64,
}

pub fn cors(template: &Value) -> Result<Cors, TemplateError> {
    let config = &template["Resources"]["HttpApi"]["Properties"]["CorsConfiguration"];
    if config.is_null() {
        return Err(TemplateError::Shape(
            "HttpApi has no CorsConfiguration".into(),
        ));
    }
    let list = |key: &str| -> Vec<String> {
        config[key]
            .as_sequence()
            .map(|items| items.iter().map(|v| str_of(v).to_owned()).collect())
            .unwrap_or_default()
    };
    Ok(Cors {
        allow_methods: list("AllowMethods"),
        allow_headers: list("AllowHeaders"),
        expose_headers: list("ExposeHeaders"),
        max_age: untagged(&config["MaxAge"]).as_u64().unwrap_or(0),
    })
}
