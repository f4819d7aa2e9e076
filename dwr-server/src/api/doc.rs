//! The OpenAPI document: [`ApiDoc`], generated from the handlers and the wire types, and
//! [`openapi`], the document a server serves, made exact for its settings.
//!
//! utoipa's derive says the routes, the types and the status codes of each handler. What it
//! cannot say is added here, from the same constants the validators use: the bounds of every
//! number, the grammar of strings the server parses (image references, volumes, environment
//! names), the rules across fields (exactly one of `memory_gb` and `memory_mb`), the errors
//! every route can answer (503, and 401 behind a token), and the security scheme, which only
//! a server with an API token has. A generated client or a fuzzer can then trust it: a
//! request the document allows is accepted, one it forbids is refused with a 4xx
//! (`scripts/fuzz-api.sh` checks both with schemathesis). The one rule it cannot state is a
//! total size over several strings (`command`, `env`); those bounds are in the descriptions.

use dwr_core::deps::{Dependency, MAX_DEPENDENCIES};
use dwr_core::retry::{MAX_RETRIES, MAX_RETRY_BACKOFF};
use dwr_core::spec::{
    MAX_ALLOCATION_TIMEOUT, MAX_COMMAND_ARGS, MAX_COMMAND_BYTES, MAX_CPU_MILLIS, MAX_ENV_BYTES,
    MAX_ENV_ENTRIES, MAX_GPUS, MAX_IMAGE_REFERENCE, MAX_MAX_RUNTIME, MAX_MEMORY_MIB, MAX_VOLUMES,
    MIN_ALLOCATION_TIMEOUT,
};
use dwr_core::{JobState, Queues, RetryCause};
use serde_json::{json, Map, Value};
use utoipa::OpenApi;

use super::cluster::MAX_CLEANUP_MINUTES;
use super::jobs::{MAX_IDEMPOTENCY_KEY, MAX_LIST_LIMIT};
use super::{cluster, events, jobs, logs, ops, ApiConfig};

/// The OpenAPI document of the API as generated from the handlers and the wire types; what
/// a server serves is [`openapi`].
#[derive(OpenApi)]
#[openapi(
    info(title = "dwr", description = "dwr: distributed workload runner API"),
    paths(
        jobs::submit_job,
        jobs::list_jobs,
        jobs::get_job,
        jobs::abort_job,
        logs::job_logs,
        events::events,
        cluster::schedule,
        cluster::cleanup,
        cluster::executors,
        cluster::queues,
        cluster::stats,
        ops::health,
        ops::metrics,
        ops::openapi_json,
    )
)]
pub struct ApiDoc;

/// The name of the bearer security scheme.
const BEARER: &str = "bearer";

/// The OpenAPI document of a server with `config`: [`ApiDoc`] made exact. With an API token,
/// every route but `/health` requires the bearer scheme (and may answer 401); without one,
/// the document has no security requirement at all.
pub fn openapi(config: &ApiConfig, queues: &Queues) -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_else(|e| {
        // Only a non-string map key could fail; the document has none.
        tracing::error!(error = %e, "the OpenAPI document does not serialize");
        json!({})
    });
    if let Some(schema) = doc.pointer_mut("/components/schemas/JobRequest") {
        exact_job_request(schema, queues);
    }
    let token = config.api_token.is_some() || !config.tenants.is_empty();
    let roles = !config.tenants.is_empty();
    for_each_operation(&mut doc, |path, method, op| {
        exact_parameters(path, op);
        let open = path == "/health";
        add_response(op, "503", unavailable(open));
        if token && !open {
            add_response(op, "401", unauthorized());
        }
        if roles && !open && method != "get" {
            add_response(op, "403", forbidden());
        }
        if token && open {
            // An empty list: this route needs no credentials.
            op.insert("security".into(), json!([]));
        }
    });
    if token {
        doc["security"] = json!([{ BEARER: [] }]);
        doc["components"]["securitySchemes"] = json!({
            BEARER: {
                "type": "http",
                "scheme": "bearer",
                "description": "The server's API token (DWR_API_TOKEN): `Authorization: Bearer <token>`",
            }
        });
    }
    doc
}

/// Calls `f` with the path, the method and the object of every operation.
fn for_each_operation(doc: &mut Value, mut f: impl FnMut(&str, &str, &mut Map<String, Value>)) {
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for (method, op) in item.iter_mut() {
            if let Some(op) = op.as_object_mut() {
                f(path, method, op);
            }
        }
    }
}

/// Adds the response `status` unless the handler's annotation declared one.
fn add_response(op: &mut Map<String, Value>, status: &str, response: Value) {
    if let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) {
        responses.entry(status).or_insert(response);
    }
}

/// A JSON response of `schema`.
fn json_content(schema: Value) -> Value {
    json!({ "application/json": { "schema": schema } })
}

/// A reference to the component schema `name`.
fn component(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// 503: the store cannot be reached, or the request took longer than the server's limit
/// (every route). `/health` answers its own body (`unhealthy`) when the store is down.
fn unavailable(health: bool) -> Value {
    if health {
        return json!({
            "description": "The store is unreachable (`unhealthy`), or the request took longer than the server's limit",
            "content": json_content(json!({
                "oneOf": [component("HealthResponse"), component("ErrorBody")],
            })),
        });
    }
    json!({
        "description": "The store is unavailable, or the request took longer than the server's limit",
        "content": json_content(component("ErrorBody")),
    })
}

/// 403: the caller's role does not allow this (a tenant's token; see `auth`).
fn forbidden() -> Value {
    json!({
        "description": "The token's role does not allow this, or the job is another tenant's",
        "content": json_content(component("ErrorBody")),
    })
}

/// 401: the bearer token is missing or wrong.
fn unauthorized() -> Value {
    json!({
        "description": "Missing or wrong bearer token",
        "headers": {
            "WWW-Authenticate": {
                "description": "`Bearer`",
                "required": true,
                "schema": { "type": "string" },
            }
        },
        "content": json_content(component("ErrorBody")),
    })
}

/// The schemas of the parameters of the operation on `path`, as the handlers parse them.
fn exact_parameters(path: &str, op: &mut Map<String, Value>) {
    let Some(params) = op.get_mut("parameters").and_then(Value::as_array_mut) else {
        return;
    };
    for param in params.iter_mut() {
        let name = param["name"].as_str().unwrap_or_default();
        let schema = match name {
            // Any form `Uuid::parse_str` reads; the hyphenated one is what the server writes.
            "job_id" => json!({ "type": "string", "format": "uuid" }),
            "status_filter" => json!({
                "type": "string",
                "enum": JobState::ALL.map(|s| s.as_str()),
            }),
            "limit" => json!({ "type": "integer", "minimum": 1, "maximum": MAX_LIST_LIMIT }),
            "offset" => {
                let max = if path == "/jobs" {
                    jobs::MAX_LIST_OFFSET
                } else {
                    logs::MAX_LOG_OFFSET
                };
                json!({ "type": "integer", "minimum": 0, "maximum": max })
            }
            "timeout_minutes" => {
                json!({ "type": "integer", "minimum": 0, "maximum": MAX_CLEANUP_MINUTES })
            }
            "follow" => json!({ "type": "boolean" }),
            "Idempotency-Key" => json!({
                "type": "string",
                "minLength": 1,
                "maxLength": MAX_IDEMPOTENCY_KEY,
                "pattern": "^[!-~]+$",
            }),
            _ => continue,
        };
        param["schema"] = schema;
    }
}

/// What `char::is_whitespace` (and so `str::trim`) takes for white space, as ranges.
const WHITESPACE: [(char, char); 10] = [
    ('\t', '\r'),
    (' ', ' '),
    ('\u{85}', '\u{85}'),
    ('\u{a0}', '\u{a0}'),
    ('\u{1680}', '\u{1680}'),
    ('\u{2000}', '\u{200a}'),
    ('\u{2028}', '\u{2029}'),
    ('\u{202f}', '\u{202f}'),
    ('\u{205f}', '\u{205f}'),
    ('\u{3000}', '\u{3000}'),
];

/// `c` as a regex escape every dialect reads alike (ECMA-262, Python, Rust).
fn escape(c: char) -> String {
    format!("\\u{:04x}", u32::from(c))
}

/// A pattern matching a string with something other than white space in it (what
/// `text.trim().is_empty()` refuses).
fn not_blank() -> String {
    let class: String = WHITESPACE
        .iter()
        .map(|&(from, to)| {
            if from == to {
                escape(from)
            } else {
                format!("{}-{}", escape(from), escape(to))
            }
        })
        .collect();
    format!("[^{class}]")
}

/// The extension keyword of a bound on the bytes of all items (or names and values) together.
const TOTAL_BYTES: &str = "x-dwr-max-total-bytes";

/// A pattern matching a string without a NUL character.
const NO_NUL: &str = "^[^\\u0000]*$";

/// A pattern of Docker's image reference grammar, as `dwr_core::spec::check_image_reference`
/// reads it: `[host[:port]/]path[:tag][@algorithm:hex]`. The first part of a path with more
/// than one is a registry host when it has a `.` or a `:`, is `localhost` or has a capital
/// letter; otherwise a path component.
fn image_reference_pattern() -> String {
    let component = "[a-z0-9]+(?:(?:\\.|_|__|-+)[a-z0-9]+)*";
    let component_no_dot = "[a-z0-9]+(?:(?:_|__|-+)[a-z0-9]+)*";
    let label = "[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?";
    let host = format!("{label}(?:\\.{label})*(?::[0-9]{{1,5}})?");
    let name = format!("(?:(?:{host}|{component_no_dot})/(?:{component}/)*)?{component}");
    let tag = "[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}";
    let digest = "[a-z0-9+._-]+:[0-9A-Fa-f]{32,}";
    format!("^{name}(?::{tag})?(?:@{digest})?$")
}

/// A pattern of a volume as `VolumeMount` parses it: `host:container[:ro|rw]`, both paths
/// absolute, without `:` and without a `..` segment.
fn volume_pattern() -> String {
    // Any segment but `..`: empty, `.`, or one not starting `..` unless longer.
    let segment = "(?:[^/:.][^/:]*|\\.(?:[^/:.][^/:]*)?|\\.\\.[^/:]+)?";
    let path = format!("/{segment}(?:/{segment})*");
    format!("^{path}:{path}(?::(?:ro|rw))?$")
}

/// Adds to the properties of `JobRequest` what `JobRequest::into_spec` and
/// `JobSpec::validate` check.
fn exact_job_request(schema: &mut Value, queues: &Queues) {
    let not_blank = not_blank();
    let cores = dwr_core::units::cores(MAX_CPU_MILLIS);
    let gb = dwr_core::units::gb(MAX_MEMORY_MIB);
    let constraints = [
        (
            "docker_image",
            json!({
                "maxLength": MAX_IMAGE_REFERENCE,
                "pattern": image_reference_pattern(),
            }),
        ),
        (
            "command",
            json!({
                "minItems": 1,
                "maxItems": MAX_COMMAND_ARGS,
                "prefixItems": [{
                    "type": "string",
                    "pattern": NO_NUL,
                    "allOf": [{ "pattern": not_blank }],
                }],
                "items": { "type": "string", "pattern": NO_NUL },
                TOTAL_BYTES: MAX_COMMAND_BYTES,
            }),
        ),
        (
            "cpu_cores",
            json!({ "exclusiveMinimum": 0, "maximum": cores }),
        ),
        ("memory_gb", json!({ "exclusiveMinimum": 0, "maximum": gb })),
        (
            "memory_mb",
            json!({ "minimum": 1, "maximum": MAX_MEMORY_MIB }),
        ),
        ("gpu_type", json!({ "pattern": not_blank })),
        ("gpu_count", json!({ "minimum": 0, "maximum": MAX_GPUS })),
        (
            "allocation_timeout",
            json!({
                "minimum": MIN_ALLOCATION_TIMEOUT.as_secs(),
                "maximum": MAX_ALLOCATION_TIMEOUT.as_secs(),
            }),
        ),
        (
            "eligible_regions",
            json!({ "items": { "type": "string", "pattern": not_blank } }),
        ),
        (
            "eligible_datacenters",
            json!({ "items": { "type": "string", "pattern": not_blank } }),
        ),
        (
            "volumes",
            json!({
                "maxItems": MAX_VOLUMES,
                "items": { "type": "string", "pattern": volume_pattern() },
            }),
        ),
        (
            "env",
            json!({
                "maxProperties": MAX_ENV_ENTRIES,
                "propertyNames": { "type": "string", "pattern": "^[^=\\u0000]+$" },
                "additionalProperties": { "type": "string", "pattern": NO_NUL },
                TOTAL_BYTES: MAX_ENV_BYTES,
            }),
        ),
        (
            "max_runtime_seconds",
            json!({ "minimum": 1, "maximum": MAX_MAX_RUNTIME.as_secs() }),
        ),
        (
            "max_retries",
            json!({ "minimum": 0, "maximum": MAX_RETRIES }),
        ),
        (
            "retry_backoff_seconds",
            json!({ "minimum": 0, "maximum": MAX_RETRY_BACKOFF.as_secs() }),
        ),
        (
            "retry_on",
            json!({ "items": { "type": "string", "enum": RetryCause::ALL.map(|c| c.as_str()) } }),
        ),
        (
            "depends_on",
            json!({
                "maxItems": MAX_DEPENDENCIES,
                "uniqueItems": true,
                "items": { "type": "string", "format": "uuid" },
            }),
        ),
        (
            "dependency",
            json!({
                "enum": Dependency::ALL
                    .map(|d| Value::from(d.as_str()))
                    .into_iter()
                    .chain([Value::Null])
                    .collect::<Vec<_>>(),
            }),
        ),
        (
            "queue",
            // This server's queues (and null: the default).
            json!({
                "enum": queues
                    .iter()
                    .map(|q| Value::from(q.name.as_str()))
                    .chain([Value::Null])
                    .collect::<Vec<_>>(),
            }),
        ),
    ];
    if let Some(properties) = schema["properties"].as_object_mut() {
        for (field, extra) in constraints {
            let Some(property) = properties.get_mut(field).and_then(Value::as_object_mut) else {
                debug_assert!(false, "JobRequest has no property {field}");
                continue;
            };
            if let Some(total) = extra.get(TOTAL_BYTES).and_then(Value::as_u64) {
                // No JSON Schema keyword bounds a sum over items: say it in words too.
                let said = property
                    .get("description")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let description = format!("{said} At most {total} bytes in all.");
                property.insert("description".into(), description.trim().into());
            }
            if let Value::Object(extra) = extra {
                property.extend(extra);
            }
        }
    }
    // Exactly one of memory_gb and memory_mb, the other absent or null.
    schema["oneOf"] = json!([
        {
            "required": ["memory_gb"],
            "properties": { "memory_gb": { "type": "number" }, "memory_mb": { "type": "null" } },
        },
        {
            "required": ["memory_mb"],
            "properties": { "memory_mb": { "type": "integer" }, "memory_gb": { "type": "null" } },
        },
    ]);
    // Retries with no cause to retry would never apply.
    schema["not"] = json!({
        "required": ["retry_on", "max_retries"],
        "properties": {
            "retry_on": { "type": "array", "maxItems": 0 },
            "max_retries": { "type": "integer", "minimum": 1 },
        },
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(token: Option<&str>) -> ApiConfig {
        ApiConfig {
            api_token: token.map(str::to_owned),
            ..ApiConfig::default()
        }
    }

    fn operations(doc: &mut Value) -> Vec<(String, Value)> {
        let mut ops = Vec::new();
        for_each_operation(doc, |path, method, op| {
            ops.push((format!("{method} {path}"), Value::Object(op.clone())));
        });
        ops
    }

    #[test]
    fn without_a_token_nothing_asks_for_credentials() {
        let mut doc = openapi(&config(None), &Queues::default());
        assert!(doc.get("security").is_none());
        assert!(doc["components"].get("securitySchemes").is_none());
        let ops = operations(&mut doc);
        assert!(ops.len() >= 12);
        for (name, op) in ops {
            assert!(op.get("security").is_none(), "{name}");
            assert!(op["responses"].get("401").is_none(), "{name}");
            assert!(op["responses"].get("503").is_some(), "{name}");
        }
    }

    #[test]
    fn with_a_token_every_route_but_health_requires_it() {
        let mut doc = openapi(&config(Some("s3cret")), &Queues::default());
        assert_eq!(doc["security"], json!([{ "bearer": [] }]));
        assert_eq!(
            doc["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
        for (name, op) in operations(&mut doc) {
            if name == "get /health" {
                assert_eq!(op["security"], json!([]));
                assert!(op["responses"].get("401").is_none());
            } else {
                assert!(
                    op.get("security").is_none(),
                    "{name} inherits the document's"
                );
                assert!(op["responses"]["401"].is_object(), "{name}");
            }
        }
        assert!(
            !doc.to_string().contains("s3cret"),
            "the token is never in the document"
        );
    }

    #[test]
    fn the_queues_a_job_may_name_are_this_servers() {
        let queues = Queues::new([dwr_core::QueueConfig::unlimited("research")]).unwrap();
        let doc = openapi(&config(None), &queues);
        let queue = &doc["components"]["schemas"]["JobRequest"]["properties"]["queue"];
        assert_eq!(
            queue["enum"],
            json!(["default", "research", null]),
            "{queue}"
        );
    }

    #[test]
    fn job_ids_bounds_and_patterns_come_from_the_validators() {
        let doc = openapi(&config(None), &Queues::default());
        let job = &doc["paths"]["/jobs/{job_id}"]["get"]["parameters"][0];
        assert_eq!(job["schema"]["format"], "uuid");
        let list = doc["paths"]["/jobs"]["get"]["parameters"]
            .as_array()
            .unwrap();
        let limit = list.iter().find(|p| p["name"] == "limit").unwrap();
        assert_eq!(limit["schema"]["maximum"], MAX_LIST_LIMIT);
        let request = &doc["components"]["schemas"]["JobRequest"];
        let props = &request["properties"];
        assert_eq!(props["cpu_cores"]["maximum"], 1024.0);
        assert_eq!(props["allocation_timeout"]["minimum"], 30);
        assert_eq!(
            props["retry_on"]["items"]["enum"],
            json!(["executor_lost", "start_failed", "exit_nonzero", "oom"])
        );
        assert!(props["docker_image"]["pattern"].is_string());
        assert_eq!(request["oneOf"].as_array().unwrap().len(), 2);
        let logs = &doc["paths"]["/jobs/{job_id}/logs"]["get"]["responses"]["200"]["content"];
        assert!(logs["text/plain"].is_object() && logs["application/json"].is_object());
    }

    /// Every string of up to `len` characters of `alphabet`.
    fn strings(alphabet: &[&str], len: usize) -> Vec<String> {
        let mut all = vec![String::new()];
        let mut last = vec![String::new()];
        for _ in 0..len {
            last = last
                .iter()
                .flat_map(|s| alphabet.iter().map(move |a| format!("{s}{a}")))
                .collect();
            all.extend(last.iter().cloned());
        }
        all
    }

    #[test]
    fn the_image_pattern_is_check_image_reference() {
        let pattern = regex::Regex::new(&image_reference_pattern()).unwrap();
        let hex = "0123456789abcdef0123456789ABCDEF";
        let mut cases = strings(&["a", "B", "0", ".", "-", "_", ":", "/", "@"], 4);
        cases.extend(strings(
            &[
                "localhost",
                "a.b",
                "Reg",
                "a_b",
                ":5000",
                ":x",
                "/",
                "-",
                "__",
                ".",
                "c",
                "@sha256:",
            ],
            4,
        ));
        for case in cases.clone() {
            cases.push(format!("{case}{hex}"));
            cases.push(format!("app@{case}"));
        }
        cases.push("x".repeat(MAX_IMAGE_REFERENCE));
        cases.push("x".repeat(MAX_IMAGE_REFERENCE + 1));
        cases.push(format!("a:{}", "t".repeat(129)));
        for case in cases {
            let documented = pattern.is_match(&case) && case.chars().count() <= MAX_IMAGE_REFERENCE;
            let accepted = dwr_core::spec::check_image_reference(&case).is_ok();
            assert_eq!(documented, accepted, "{case:?}");
        }
    }

    #[test]
    fn the_volume_pattern_is_volume_mount() {
        let pattern = regex::Regex::new(&volume_pattern()).unwrap();
        for case in strings(&["/", ":", ".", "a", "ro", "rw", "r"], 6) {
            let accepted = case.parse::<dwr_core::VolumeMount>().is_ok();
            assert_eq!(pattern.is_match(&case), accepted, "{case:?}");
        }
    }

    #[test]
    fn the_whitespace_class_is_rusts() {
        let in_class = |c: char| WHITESPACE.iter().any(|&(a, b)| (a..=b).contains(&c));
        for c in (0..=u32::from(char::MAX)).filter_map(char::from_u32) {
            assert_eq!(in_class(c), c.is_whitespace(), "{c:?}");
        }
    }
}
