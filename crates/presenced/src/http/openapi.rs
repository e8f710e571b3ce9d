//! The OpenAPI document served at `/openapi.json`.
//!
//! Each route of the table in `mod.rs` carries a [`Doc`], and [`operation`]
//! turns it into an operation that lists every status the route can
//! answer: its success; the refusals every route of its kind gives (one
//! that serves a tenant: 400, 401, 403, 429; one that takes a body: 400,
//! 408, 413, 415; every route: 503, when its store or Redis cannot be
//! reached); and its own (404 for a missing session or subscription). Every
//! error is Graph's envelope (`ODataError`), and every response carries
//! `request-id` and `client-request-id`. There is no `default` response: a
//! status the document does not list is a bug, which the schemathesis test
//! looks for.
//!
//! Request and response schemas are derived from the types the handlers
//! parse and render (utoipa), with the string enums built from the model's
//! own lists (`wire::schema`), so they cannot drift from what is served.

use utoipa::ToSchema;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Operation, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, InfoBuilder, OpenApiBuilder, Paths, Ref, RefOr, Required,
    ResponseBuilder, Schema,
};

use crate::wire::schema;

/// What a route answers when it succeeds.
#[derive(Clone, Copy, Debug)]
pub enum Answer {
    /// `200` with an empty body (Graph's write actions).
    Empty,
    /// `200` with a JSON body of the named schema.
    Json(&'static str),
    /// `201` with a JSON body of the named schema, and its `Location`.
    Created(&'static str),
    /// `204`.
    NoContent,
    /// `200` with Prometheus' text format.
    Metrics,
    /// `200` with Server-Sent Events.
    EventStream,
    /// `200` with this document.
    Document,
    /// `200` with the board's page (HTML).
    Board,
    /// `200` with one of the board's files (a script, a style sheet, an icon).
    BoardAsset,
}

/// How the OpenAPI document describes one route.
#[derive(Clone, Copy, Debug)]
pub struct Doc {
    summary: &'static str,
    /// The schema of the JSON body, for a route that takes one.
    request: Option<&'static str>,
    answer: Answer,
    /// Whether the route serves a tenant, and so takes a token.
    tenant: bool,
    /// Statuses the route answers beyond those of its kind.
    also: &'static [u16],
    /// Optional query parameters: each one's name and description.
    queries: &'static [(&'static str, &'static str)],
}

/// A route that serves a tenant.
pub const fn doc(summary: &'static str, request: Option<&'static str>, answer: Answer) -> Doc {
    Doc {
        summary,
        request,
        answer,
        tenant: true,
        also: &[],
        queries: &[],
    }
}

impl Doc {
    /// An operational route, which takes no token.
    pub const fn open(self) -> Doc {
        Doc {
            tenant: false,
            ..self
        }
    }

    /// A route that also answers `statuses`.
    pub const fn also(self, statuses: &'static [u16]) -> Doc {
        Doc {
            also: statuses,
            ..self
        }
    }

    /// A route that takes optional query parameters.
    pub const fn queries(self, queries: &'static [(&'static str, &'static str)]) -> Doc {
        Doc { queries, ..self }
    }
}

/// The name of the security scheme of Graph's routes.
const BEARER: &str = "bearerAuth";

fn text_header(description: &str) -> utoipa::openapi::header::Header {
    HeaderBuilder::new()
        .schema(ObjectBuilder::new().schema_type(Type::String))
        .description(Some(description))
        .build()
}

/// A response with the headers every response has.
fn response(description: &str) -> ResponseBuilder {
    ResponseBuilder::new()
        .description(description)
        .header("request-id", text_header("This request's id."))
        .header(
            "client-request-id",
            text_header("The caller's client-request-id when it sent a short printable one, else the request id."),
        )
}

fn json_content(schema: &str) -> utoipa::openapi::Content {
    ContentBuilder::new()
        .schema(Some(Ref::from_schema_name(schema)))
        .build()
}

fn string_content() -> utoipa::openapi::Content {
    ContentBuilder::new()
        .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
        .build()
}

fn retry_after() -> utoipa::openapi::header::Header {
    HeaderBuilder::new()
        .schema(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some("^[1-9][0-9]*$")),
        )
        .description(Some("Whole seconds to wait before retrying, at least 1."))
        .build()
}

fn error_description(status: u16) -> &'static str {
    match status {
        400 => {
            "The request is not valid: a field of the body, a parameter or an id in the path; the message names it and says what to send. Nothing was written."
        }
        401 => {
            "No bearer token, or one that is not valid (expired, not yet valid, wrongly signed, or for another issuer or audience)."
        }
        403 => {
            "The token lacks the permission this needs (the message names it), or the caller may not act on that user."
        }
        404 => {
            "Not found: the message says what (a session, a subscription, or the manual clock when presenced does not run with --clock manual)."
        }
        408 => "The body did not arrive within 10 seconds of the headers.",
        413 => "The body is larger than 128 KiB.",
        415 => "The body is not sent as JSON: send it with Content-Type: application/json.",
        429 => {
            "Too many requests from this application or tenant; nothing was applied. Retry after Retry-After."
        }
        503 => {
            "presenced is starting or stopping, or cannot reach its store (disk or Redis); a write answered so was not made, or is safe to send again. Retry after Retry-After."
        }
        _ => "Refused; the message says why.",
    }
}

fn error_response(status: u16) -> utoipa::openapi::Response {
    let mut builder =
        response(error_description(status)).content("application/json", json_content("ODataError"));
    match status {
        401 => {
            builder = builder.header(
                "WWW-Authenticate",
                text_header("Bearer: send a token in the Authorization header."),
            );
        }
        429 | 503 => builder = builder.header("Retry-After", retry_after()),
        _ => {}
    }
    builder.build()
}

fn success(answer: Answer) -> (&'static str, utoipa::openapi::Response) {
    match answer {
        Answer::Empty => ("200", response("Done; the body is empty.").build()),
        Answer::Json(schema) => (
            "200",
            response("Success.")
                .content("application/json", json_content(schema))
                .build(),
        ),
        Answer::Created(schema) => (
            "201",
            response("Created.")
                .content("application/json", json_content(schema))
                .header("Location", text_header("The address of what was created."))
                .build(),
        ),
        Answer::NoContent => ("204", response("Done; there is no body.").build()),
        Answer::Metrics => (
            "200",
            response("Prometheus' text exposition format.")
                .content("text/plain", string_content())
                .build(),
        ),
        Answer::EventStream => (
            "200",
            response("Server-Sent Events: one `presence` event (a presence as JSON, with the stream position as its id) per visible change.")
                .content("text/event-stream", string_content())
                .build(),
        ),
        Answer::Board => (
            "200",
            response("The board's page.")
                .content("text/html", string_content())
                .build(),
        ),
        Answer::BoardAsset => (
            "200",
            response("The file.")
                .content("text/javascript", string_content())
                .content("text/css", string_content())
                .content("image/svg+xml", string_content())
                .build(),
        ),
        Answer::Document => (
            "200",
            response("This document.")
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(ObjectBuilder::new().schema_type(Type::Object)))
                        .build(),
                )
                .build(),
        ),
    }
}

/// A path parameter, by name and by where it sits.
fn path_parameter(path: &str, name: &str) -> utoipa::openapi::path::Parameter {
    let builder = ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Path)
        .required(Required::True);
    if name == "asset" {
        builder
            .description(Some("The file's name."))
            .schema(Some(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(crate::http::board::asset_names())),
            ))
            .build()
    } else if path.contains("/subscriptions/") {
        builder
            .description(Some("The subscription's id."))
            .schema(Some(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .min_length(Some(1)),
            ))
            .build()
    } else {
        builder.schema(Some(schema::id())).build()
    }
}

/// The operation of one route.
pub fn operation(path: &str, doc: &Doc) -> Operation {
    let mut operation = OperationBuilder::new().summary(Some(doc.summary));
    for segment in path.split('/') {
        if let Some(name) = segment
            .strip_prefix('{')
            .and_then(|rest| rest.strip_suffix('}'))
        {
            operation = operation.parameter(path_parameter(path, name));
        }
    }
    for &(name, description) in doc.queries {
        operation = operation.parameter(
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Query)
                .required(Required::False)
                .description(Some(description))
                .schema(Some(ObjectBuilder::new().schema_type(Type::String))),
        );
    }
    if let Some(schema) = doc.request {
        operation = operation.request_body(Some(
            RequestBodyBuilder::new()
                .content("application/json", json_content(schema))
                .required(Some(Required::True))
                .build(),
        ));
    }
    if doc.tenant {
        operation = operation.security(SecurityRequirement::new(BEARER, Vec::<String>::new()));
    }
    let (status, answer) = success(doc.answer);
    operation = operation.response(status, answer);
    let mut statuses: Vec<u16> = doc.also.to_vec();
    if doc.tenant {
        statuses.extend([400, 401, 403, 429]);
    }
    if doc.request.is_some() {
        statuses.extend([400, 408, 413, 415]);
    }
    statuses.push(503);
    statuses.sort_unstable();
    statuses.dedup();
    for status in statuses {
        operation = operation.response(status.to_string(), error_response(status));
    }
    operation.build()
}

/// A schema and every schema it names, for the components.
fn with<T: ToSchema>(components: ComponentsBuilder) -> ComponentsBuilder {
    let mut named: Vec<(String, RefOr<Schema>)> = Vec::new();
    T::schemas(&mut named);
    components.schema_from::<T>().schemas_from_iter(named)
}

/// The whole document for `paths`, as JSON.
pub fn document(paths: Paths) -> serde_json::Value {
    use crate::http::{extensions, ops, presence, subscriptions, wire::*};
    let mut components = ComponentsBuilder::new();
    components = with::<PresenceJson>(components);
    components = with::<presence::PresenceCollection>(components);
    components = with::<SetPresenceBody>(components);
    components = with::<ClearPresenceBody>(components);
    components = with::<SetUserPreferredPresenceBody>(components);
    components = with::<SetStatusMessageBody>(components);
    components = with::<WorkLocationBody>(components);
    components = with::<GetPresencesBody>(components);
    components = with::<crate::http::batch::BatchBody>(components);
    components = with::<crate::http::batch::BatchResponseCollection>(components);
    components = with::<LegacySessionBody>(components);
    components = with::<OutOfOfficeBody>(components);
    components = with::<ClockAdvanceBody>(components);
    components = with::<subscriptions::SubscriptionBody>(components);
    components = with::<subscriptions::SubscriptionUpdateBody>(components);
    components = with::<subscriptions::SubscriptionJson>(components);
    components = with::<subscriptions::SubscriptionCollection>(components);
    components = with::<extensions::SessionsJson>(components);
    components = with::<extensions::ClockJson>(components);
    components = with::<ops::HealthJson>(components);
    components = with::<ops::ODataError>(components);
    let components = components
        .security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "An Entra-style JWT (tid, oid or appid/azp, scp or roles): HS256 with --auth hs256 (`presenced token` mints one), RS256/ES256 with --auth jwks. With --auth none no token is needed.",
                    ))
                    .build(),
            ),
        )
        .build();
    let openapi = OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("presenced")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "A presence server that speaks the Microsoft Graph presence API. Every error is Graph's OData error envelope.",
                ))
                .build(),
        )
        .paths(paths)
        .components(Some(components))
        .build();
    let mut document = serde_json::to_value(&openapi).unwrap_or_default();
    require_headers(&mut document);
    list_pairs(&mut document);
    document
}

/// Gives each body that takes an availability/activity pair the list of
/// the pairs it accepts (`anyOf`), which a schema per field cannot say:
/// Busy is an availability of setPresence and Available an activity, but
/// Busy/Available is no pair of it. utoipa's derive has no place for a
/// constraint across fields, so it is added to the JSON.
fn list_pairs(document: &mut serde_json::Value) {
    use presence_core::{Activity, Availability, PreferredState, SessionState};
    let session = |states: &[SessionState]| -> Vec<(Availability, Activity)> {
        states.iter().map(|state| state.pair()).collect()
    };
    let bodies = [
        ("SetPresenceBody", session(SessionState::SET_PRESENCE)),
        ("LegacySessionBody", session(SessionState::LEGACY)),
        (
            "SetUserPreferredPresenceBody",
            PreferredState::ALL
                .iter()
                .map(|state| state.pair())
                .collect(),
        ),
    ];
    for (body, pairs) in bodies {
        let any_of: Vec<serde_json::Value> = pairs
            .iter()
            .map(|(availability, activity)| {
                serde_json::json!({"properties": {
                    "availability": {"const": availability.as_str()},
                    "activity": {"const": activity.as_str()},
                }})
            })
            .collect();
        document["components"]["schemas"][body]["anyOf"] = serde_json::Value::Array(any_of);
    }
}

/// Marks every documented response header `required`: presenced always
/// sends each header it documents. utoipa's `Header` has no `required`
/// field, so it is added to the JSON.
fn require_headers(document: &mut serde_json::Value) {
    let Some(paths) = document["paths"].as_object_mut() else {
        return;
    };
    for item in paths.values_mut() {
        let Some(operations) = item.as_object_mut() else {
            continue;
        };
        for operation in operations.values_mut() {
            let Some(responses) = operation["responses"].as_object_mut() else {
                continue;
            };
            for response in responses.values_mut() {
                if let Some(headers) = response["headers"].as_object_mut() {
                    for header in headers.values_mut() {
                        header["required"] = serde_json::Value::Bool(true);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    fn refs<'a>(value: &'a Value, found: &mut Vec<&'a str>) {
        match value {
            Value::Object(map) => {
                for (key, value) in map {
                    match (key.as_str(), value) {
                        ("$ref", Value::String(target)) => found.push(target),
                        _ => refs(value, found),
                    }
                }
            }
            Value::Array(values) => values.iter().for_each(|value| refs(value, found)),
            _ => {}
        }
    }

    #[test]
    fn every_reference_resolves_and_every_operation_lists_its_statuses() {
        let document = crate::http::openapi_document();
        let mut found = Vec::new();
        refs(&document, &mut found);
        assert!(found.len() > 100, "{}", found.len());
        for target in found {
            let pointer = target.strip_prefix('#').expect("a local reference");
            assert!(
                document.pointer(pointer).is_some(),
                "{target} is referenced but not defined"
            );
        }
        let schemes = &document["components"]["securitySchemes"]["bearerAuth"];
        assert_eq!(schemes["scheme"], "bearer", "{schemes}");
        for (path, item) in document["paths"].as_object().expect("paths") {
            for (method, operation) in item.as_object().expect("an item") {
                let responses = operation["responses"].as_object().expect("responses");
                assert!(!responses.contains_key("default"), "{method} {path}");
                assert!(responses.contains_key("503"), "{method} {path}");
                let secured = operation.get("security").is_some();
                let open = [
                    "/healthz",
                    "/readyz",
                    "/metrics",
                    "/openapi.json",
                    "/_presenced/board",
                    "/_presenced/board/{asset}",
                ]
                .contains(&path.as_str());
                assert_eq!(secured, !open, "{method} {path}");
                if secured {
                    assert!(responses.contains_key("401"), "{method} {path}");
                    assert_eq!(
                        responses["401"]["headers"]["WWW-Authenticate"]["required"], true,
                        "{method} {path}"
                    );
                }
                if operation.get("requestBody").is_some() {
                    for status in ["400", "408", "413", "415"] {
                        assert!(responses.contains_key(status), "{method} {path} {status}");
                    }
                }
            }
        }
        let create = &document["paths"]["/v1.0/subscriptions"]["post"]["responses"];
        assert!(create["201"]["headers"]["Location"].is_object(), "{create}");
        let delete = &document["paths"]["/v1.0/subscriptions/{id}"]["delete"]["responses"];
        assert!(delete["204"].is_object(), "{delete}");
        let stream = &document["paths"]["/_presenced/stream"]["get"]["responses"]["200"];
        assert!(
            stream["content"]["text/event-stream"].is_object(),
            "{stream}"
        );
    }

    #[test]
    fn request_fields_that_are_required_are_marked_and_enums_listed() {
        let document = crate::http::openapi_document();
        let schemas = &document["components"]["schemas"];
        let set_presence = &schemas["SetPresenceBody"];
        assert_eq!(
            set_presence["required"],
            serde_json::json!(["sessionId", "availability", "activity"]),
            "{set_presence}"
        );
        let availability = set_presence["properties"]["availability"]["enum"]
            .as_array()
            .expect("an enum");
        assert!(
            availability.contains(&Value::from("DoNotDisturb")),
            "{set_presence}"
        );
        assert!(
            !availability.contains(&Value::from("Offline")),
            "{set_presence}"
        );
        let presence = &schemas["PresenceJson"]["properties"];
        assert_eq!(
            presence["activity"]["enum"].as_array().map(Vec::len),
            Some(presence_core::Activity::ALL.len())
        );
        assert_eq!(
            schemas["SubscriptionBody"]["required"]
                .as_array()
                .map(Vec::len),
            Some(4)
        );
        assert!(schemas["SubscriptionUpdateBody"].get("required").is_none());
    }
}
