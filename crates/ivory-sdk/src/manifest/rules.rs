//! Stage two of validation: the semantic rules that a schema cannot express.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};

use url::{Host, Url};

use super::path::{Findings, JsonPath};
use super::types::{
    Action, AuthType, ConflictPolicy, Connection, CursorKind, Direction, FieldType, Listing,
    Manifest, ObjectSpec, PLATFORM_KINDS, SettingSpec, SyncSpec, Trigger, ValidationMode,
    WebhookSpec, WorkflowSpec,
};

/// Upper bound of `rateLimitPerMinute` and `burst`: a sanity check against per-day figures.
pub(crate) const MAX_RATE_PER_MINUTE: u32 = 100_000;
/// Upper bound of `webhooks.toleranceSeconds`.
pub(crate) const MAX_TOLERANCE_SECONDS: u32 = 3600;
/// Upper bound of `connection.sync.lookbackSeconds` (seven days).
pub(crate) const MAX_LOOKBACK_SECONDS: u32 = 604_800;

const EMPTY: &str = "must not be empty";

/// Runs every semantic rule on `manifest`, recording each broken one.
pub(crate) fn check(manifest: &Manifest, mode: ValidationMode, findings: &mut Findings) {
    let root = JsonPath::root();
    identity(manifest, &root, findings);
    listing(
        &manifest.listing,
        manifest.connection.sync.direction,
        &root.key("listing"),
        findings,
    );
    hosts(manifest, mode, &root.key("hosts"), findings);
    connection(
        &manifest.connection,
        mode,
        &root.key("connection"),
        findings,
    );
    settings(&manifest.settings, &root.key("settings"), findings);
    if let Some(webhooks) = &manifest.webhooks {
        webhook_block(webhooks, &root.key("webhooks"), findings);
    }
    objects(&manifest.objects, &root.key("objects"), findings);
    workflows(manifest, &root.key("workflows"), findings);
}

fn blank(text: &str) -> bool {
    text.trim().is_empty()
}

fn not_blank(text: &str, path: JsonPath, findings: &mut Findings) {
    if blank(text) {
        findings.push(path, EMPTY);
    }
}

fn optional_not_blank(text: Option<&str>, path: JsonPath, findings: &mut Findings) {
    if let Some(text) = text {
        not_blank(text, path, findings);
    }
}

/// Reports the second and later occurrences of each value, as `duplicate <what> "<value>"`.
fn duplicates<'a>(
    values: impl IntoIterator<Item = (JsonPath, &'a str)>,
    what: &str,
    findings: &mut Findings,
) {
    let mut seen: Vec<&str> = Vec::new();
    for (path, value) in values {
        if seen.contains(&value) {
            findings.push(path, format!("duplicate {what} {value:?}"));
        } else {
            seen.push(value);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Identity and listing

fn identity(manifest: &Manifest, root: &JsonPath, findings: &mut Findings) {
    if !is_connector_slug(&manifest.id) {
        findings.push(
            root.key("id"),
            "must be a lowercase slug (a-z, 0-9, -; 2–64 characters; starting with a letter)",
        );
    }
    not_blank(&manifest.name, root.key("name"), findings);
    not_blank(&manifest.publisher, root.key("publisher"), findings);
    not_blank(&manifest.description, root.key("description"), findings);
    if semver::Version::parse(&manifest.version).is_err() {
        findings.push(
            root.key("version"),
            "must be a semantic version such as 1.2.0",
        );
    }
}

fn is_connector_slug(id: &str) -> bool {
    (2..=64).contains(&id.len())
        && id.starts_with(|c: char| c.is_ascii_lowercase())
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn listing(listing: &Listing, direction: Direction, path: &JsonPath, findings: &mut Findings) {
    let documented = listing
        .conflict_policy
        .as_deref()
        .is_some_and(|t| !blank(t));
    if direction == Direction::Bidirectional && !documented {
        findings.push(
            path.key("conflictPolicy"),
            "a bidirectional connector must document its conflict policy for tenants",
        );
    } else {
        optional_not_blank(
            listing.conflict_policy.as_deref(),
            path.key("conflictPolicy"),
            findings,
        );
    }
    optional_not_blank(listing.summary.as_deref(), path.key("summary"), findings);
    optional_not_blank(listing.cursor.as_deref(), path.key("cursor"), findings);
    let categories = path.key("categories");
    for (index, category) in listing.categories.iter().enumerate() {
        not_blank(category, categories.index(index), findings);
    }
    duplicates(
        listing
            .categories
            .iter()
            .enumerate()
            .map(|(i, c)| (categories.index(i), c.as_str())),
        "category",
        findings,
    );
}

// ---------------------------------------------------------------------------------------------
// Hosts and URLs

fn hosts(manifest: &Manifest, mode: ValidationMode, path: &JsonPath, findings: &mut Findings) {
    if manifest.hosts.is_empty() && manifest.connection.auth != AuthType::None {
        findings.push(path.clone(), "at least one upstream host is required");
    }
    for (index, host) in manifest.hosts.iter().enumerate() {
        if let Err(message) = check_host(host, mode) {
            findings.push(path.index(index), message);
        }
    }
    duplicates(
        manifest
            .hosts
            .iter()
            .enumerate()
            .map(|(i, h)| (path.index(i), h.as_str())),
        "host",
        findings,
    );
}

/// A host entry is a bare, lowercase DNS name or IP address: no scheme, path or port.
fn check_host(host: &str, mode: ValidationMode) -> Result<(), &'static str> {
    if blank(host) {
        return Err(EMPTY);
    }
    if host.contains("://") || host.contains(['/', '?', '#', '@']) {
        return Err("must be a bare host name such as api.stripe.com, not a URL");
    }
    let ip = host
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .and_then(|inner| inner.parse::<Ipv6Addr>().ok())
        .map(IpAddr::V6);
    if ip.is_none() && host.contains(':') {
        return Err("must be a bare host name such as api.stripe.com, without a port");
    }
    let ip = ip.or_else(|| host.parse::<IpAddr>().ok());
    let valid_name = host.len() <= 253
        && host.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        });
    if ip.is_none() && !valid_name {
        return Err("must be a lowercase host name such as api.stripe.com");
    }
    let loopback = ip.is_some_and(|ip| ip.is_loopback()) || host == "localhost";
    if loopback && mode == ValidationMode::Production {
        return Err("a loopback host is allowed only in test mode");
    }
    Ok(())
}

fn check_url(raw: &str, mode: ValidationMode, path: JsonPath, findings: &mut Findings) {
    let url = match Url::parse(raw) {
        Ok(url) => url,
        Err(error) => {
            findings.push(path, format!("not a valid URL ({error})"));
            return;
        }
    };
    let loopback = match url.host() {
        Some(Host::Domain(domain)) => domain == "localhost",
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    let test = mode == ValidationMode::Test;
    match (url.scheme(), loopback) {
        ("https", false) if url.host().is_some() => {}
        ("https", true) | ("http", true) if test => {}
        ("https", true) | ("http", true) => {
            findings.push(
                path,
                "must be an https URL (http and loopback URLs are allowed only in test mode)",
            );
            return;
        }
        _ => {
            findings.push(path, "must be an https URL");
            return;
        }
    }
    if !url.username().is_empty() || url.password().is_some() {
        findings.push(path, "must not contain credentials");
    }
}

// ---------------------------------------------------------------------------------------------
// Connection and sync

fn connection(
    connection: &Connection,
    mode: ValidationMode,
    path: &JsonPath,
    findings: &mut Findings,
) {
    let urls = [
        ("authorizationUrl", connection.authorization_url.as_deref()),
        ("tokenUrl", connection.token_url.as_deref()),
        ("revocationUrl", connection.revocation_url.as_deref()),
    ];
    let auth = connection.auth;
    match auth {
        AuthType::Oauth2 => {
            for (key, url) in urls {
                match url {
                    Some(url) => check_url(url, mode, path.key(key), findings),
                    None if key != "revocationUrl" => {
                        findings.push(path.key(key), "required when connection.type is oauth2")
                    }
                    None => {}
                }
            }
            if connection.scopes.is_empty() {
                findings.push(
                    path.key("scopes"),
                    "at least one scope is required for oauth2",
                );
            }
        }
        AuthType::ApiKey | AuthType::None => {
            let not_allowed = format!("not allowed when connection.type is {}", auth.as_str());
            for (key, url) in urls {
                if url.is_some() {
                    findings.push(path.key(key), not_allowed.clone());
                }
            }
            if !connection.scopes.is_empty() {
                findings.push(path.key("scopes"), not_allowed);
            }
        }
    }
    let scopes = path.key("scopes");
    if auth == AuthType::Oauth2 {
        for (index, scope) in connection.scopes.iter().enumerate() {
            if blank(scope) {
                findings.push(scopes.index(index), EMPTY);
            } else if scope.contains(char::is_whitespace) {
                findings.push(
                    scopes.index(index),
                    "must not contain whitespace (list each scope separately)",
                );
            }
        }
        duplicates(
            connection
                .scopes
                .iter()
                .enumerate()
                .map(|(i, s)| (scopes.index(i), s.as_str())),
            "scope",
            findings,
        );
    }
    sync(&connection.sync, &path.key("sync"), findings);
}

fn sync(sync: &SyncSpec, path: &JsonPath, findings: &mut Findings) {
    let rate = sync.rate_limit_per_minute;
    if rate == 0 {
        findings.push(path.key("rateLimitPerMinute"), "must be > 0");
    } else if rate > MAX_RATE_PER_MINUTE {
        findings.push(
            path.key("rateLimitPerMinute"),
            format!("must be <= {MAX_RATE_PER_MINUTE}"),
        );
    }
    if let Some(burst) = sync.burst {
        if burst == 0 {
            findings.push(path.key("burst"), "must be > 0");
        } else if burst > MAX_RATE_PER_MINUTE {
            findings.push(
                path.key("burst"),
                format!("must be <= {MAX_RATE_PER_MINUTE}"),
            );
        } else if rate > 0 && burst > rate {
            findings.push(
                path.key("burst"),
                format!("must be <= rateLimitPerMinute ({rate})"),
            );
        }
    }
    if let Some(lookback) = sync.lookback_seconds {
        if sync.cursor != CursorKind::UpdatedAt {
            findings.push(
                path.key("lookbackSeconds"),
                "only allowed when connection.sync.cursor is updated_at",
            );
        } else if lookback > MAX_LOOKBACK_SECONDS {
            findings.push(
                path.key("lookbackSeconds"),
                format!("must be <= {MAX_LOOKBACK_SECONDS}"),
            );
        }
    }
    let required = match sync.direction {
        Direction::Inbound => Some(ConflictPolicy::SourceWins),
        Direction::Outbound => Some(ConflictPolicy::PlatformWins),
        Direction::Bidirectional => None,
    };
    if let Some(required) = required
        && sync.conflict_policy != required
    {
        findings.push(
            path.key("conflictPolicy"),
            format!(
                "an {} connector must use {}",
                sync.direction.as_str(),
                required.as_str()
            ),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Settings and webhooks

fn settings(settings: &[SettingSpec], path: &JsonPath, findings: &mut Findings) {
    for (index, setting) in settings.iter().enumerate() {
        let at = path.index(index);
        if !is_camel_identifier(&setting.key) {
            findings.push(
                at.key("key"),
                "must be a camelCase identifier such as baseId",
            );
        }
        not_blank(&setting.description, at.key("description"), findings);
        if setting.required && setting.default.is_some() {
            findings.push(at.key("default"), "not allowed on a required setting");
        }
    }
    duplicates(
        settings
            .iter()
            .enumerate()
            .map(|(i, s)| (path.index(i).key("key"), s.key.as_str())),
        "setting key",
        findings,
    );
}

fn is_camel_identifier(key: &str) -> bool {
    key.len() <= 64
        && key.starts_with(|c: char| c.is_ascii_lowercase())
        && key.chars().all(|c| c.is_ascii_alphanumeric())
}

fn webhook_block(webhooks: &WebhookSpec, path: &JsonPath, findings: &mut Findings) {
    let tolerance = webhooks.tolerance_seconds;
    if tolerance == 0 {
        findings.push(path.key("toleranceSeconds"), "must be > 0");
    } else if tolerance > MAX_TOLERANCE_SECONDS {
        findings.push(
            path.key("toleranceSeconds"),
            format!("must be <= {MAX_TOLERANCE_SECONDS}"),
        );
    }
    let events = path.key("events");
    for (index, event) in webhooks.events.iter().enumerate() {
        if blank(event) {
            findings.push(events.index(index), EMPTY);
        } else if event.contains(char::is_whitespace) {
            findings.push(events.index(index), "must not contain whitespace");
        }
    }
    duplicates(
        webhooks
            .events
            .iter()
            .enumerate()
            .map(|(i, e)| (events.index(i), e.as_str())),
        "event",
        findings,
    );
}

// ---------------------------------------------------------------------------------------------
// Objects

fn objects(objects: &[ObjectSpec], path: &JsonPath, findings: &mut Findings) {
    let declared: Vec<&str> = objects.iter().map(|o| o.kind.as_str()).collect();
    for (index, object) in objects.iter().enumerate() {
        let at = path.index(index);
        if !crate::record::is_kind_slug(&object.kind) {
            findings.push(
                at.key("kind"),
                "must be a snake_case slug such as invoice (a-z, 0-9, _; 1–64 characters; starting with a letter)",
            );
        } else if PLATFORM_KINDS.contains(&object.kind.as_str()) {
            findings.push(
                at.key("kind"),
                format!(
                    "{:?} is a platform kind and cannot be declared",
                    object.kind
                ),
            );
        }
        optional_not_blank(object.label.as_deref(), at.key("label"), findings);
        fields(object, &declared, &at.key("fields"), findings);
    }
    duplicates(
        objects
            .iter()
            .enumerate()
            .map(|(i, o)| (path.index(i).key("kind"), o.kind.as_str())),
        "object kind",
        findings,
    );
}

fn fields(object: &ObjectSpec, declared: &[&str], path: &JsonPath, findings: &mut Findings) {
    if object.fields.is_empty() {
        findings.push(path.clone(), "at least one field is required");
    }
    for (index, field) in object.fields.iter().enumerate() {
        let at = path.index(index);
        if blank(&field.name) {
            findings.push(at.key("name"), EMPTY);
        } else if field.name.contains(['{', '}']) {
            findings.push(at.key("name"), "must not contain { or }");
        }
        let is_formula = field.r#type == FieldType::Formula;
        match (&field.formula, is_formula) {
            (None, true) => findings.push(at.key("formula"), "required when type is formula"),
            (Some(formula), true) if blank(formula) => findings.push(at.key("formula"), EMPTY),
            (Some(formula), true) => {
                check_formula(
                    formula,
                    object,
                    Some(&field.name),
                    at.key("formula"),
                    findings,
                );
            }
            (Some(_), false) => {
                findings.push(at.key("formula"), "only allowed when type is formula");
            }
            (None, false) => {}
        }
        if is_formula && field.required {
            findings.push(
                at.key("required"),
                "not allowed on a formula field (the platform computes its value)",
            );
        }
        let is_reference = field.r#type == FieldType::Reference;
        match (&field.references, is_reference) {
            (None, true) => {
                findings.push(at.key("references"), "required when type is reference");
            }
            (Some(kind), true) => {
                if let Err(message) = known_kind(kind, declared) {
                    findings.push(at.key("references"), message);
                }
            }
            (Some(_), false) => {
                findings.push(at.key("references"), "only allowed when type is reference");
            }
            (None, false) => {}
        }
    }
    duplicates(
        object
            .fields
            .iter()
            .enumerate()
            .map(|(i, f)| (path.index(i).key("name"), f.name.as_str())),
        "field name",
        findings,
    );
}

/// A kind that actions, triggers and references may name: declared or built in.
fn known_kind(kind: &str, declared: &[&str]) -> Result<(), String> {
    if declared.contains(&kind) || PLATFORM_KINDS.contains(&kind) {
        Ok(())
    } else {
        Err(format!(
            "unknown object kind {kind:?} (declare it in objects, or use a platform kind: {})",
            PLATFORM_KINDS.join(", ")
        ))
    }
}

/// Checks the `{Field Name}` references of a formula against the object's fields. The formula
/// language itself is the platform's to parse; this catches typos at publish time.
fn check_formula(
    formula: &str,
    object: &ObjectSpec,
    own_field: Option<&str>,
    path: JsonPath,
    findings: &mut Findings,
) {
    let references = match field_references(formula) {
        Ok(references) => references,
        Err(message) => {
            findings.push(path, message);
            return;
        }
    };
    for reference in references {
        if Some(reference) == own_field {
            findings.push(
                path.clone(),
                format!("must not refer to its own field {{{reference}}}"),
            );
        } else if !object.fields.iter().any(|f| f.name == reference) {
            findings.push(
                path.clone(),
                format!(
                    "unknown field {{{reference}}} (object kind {:?} has no such field)",
                    object.kind
                ),
            );
        }
    }
}

/// The names inside `{…}` outside string literals, in order.
fn field_references(formula: &str) -> Result<Vec<&str>, &'static str> {
    let mut references = Vec::new();
    let mut quote: Option<char> = None;
    let mut escaped = false;
    let mut open: Option<usize> = None;
    for (position, c) in formula.char_indices() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        match (c, open) {
            ('{', None) => open = Some(position + 1),
            ('{', Some(_)) => return Err("has a { inside a field reference"),
            ('}', Some(start)) => {
                let name = &formula[start..position];
                if blank(name) {
                    return Err("has an empty field reference {}");
                }
                references.push(name);
                open = None;
            }
            ('}', None) => return Err("has a } without a matching {"),
            ('"' | '\'', None) => quote = Some(c),
            _ => {}
        }
    }
    match (open, quote) {
        (Some(_), _) => Err("has a { without a matching }"),
        (None, Some(_)) => Err("has an unterminated string"),
        (None, None) => Ok(references),
    }
}

// ---------------------------------------------------------------------------------------------
// Workflows

fn workflows(manifest: &Manifest, path: &JsonPath, findings: &mut Findings) {
    let declared: Vec<&str> = manifest.objects.iter().map(|o| o.kind.as_str()).collect();
    // The first declaration of a kind counts; later ones are reported as duplicates.
    let mut objects: HashMap<&str, &ObjectSpec> = HashMap::new();
    for object in &manifest.objects {
        objects.entry(object.kind.as_str()).or_insert(object);
    }
    for (index, workflow) in manifest.workflows.iter().enumerate() {
        workflow_rules(
            manifest,
            workflow,
            &declared,
            &objects,
            &path.index(index),
            findings,
        );
    }
    duplicates(
        manifest
            .workflows
            .iter()
            .enumerate()
            .map(|(i, w)| (path.index(i).key("name"), w.name.as_str())),
        "workflow name",
        findings,
    );
}

fn workflow_rules(
    manifest: &Manifest,
    workflow: &WorkflowSpec,
    declared: &[&str],
    objects: &HashMap<&str, &ObjectSpec>,
    at: &JsonPath,
    findings: &mut Findings,
) {
    not_blank(&workflow.name, at.key("name"), findings);
    let trigger = at.key("trigger");
    let trigger_kind = match &workflow.trigger {
        Trigger::WebhookEvent(event) => {
            let path = trigger.key("webhookEvent");
            match &manifest.webhooks {
                None => findings.push(path, "requires a webhooks block"),
                Some(_) if blank(event) => findings.push(path, EMPTY),
                Some(webhooks)
                    if !webhooks.events.is_empty() && !webhooks.events.contains(event) =>
                {
                    findings.push(path, format!("{event:?} is not listed in webhooks.events"));
                }
                Some(_) => {}
            }
            None
        }
        Trigger::RecordCondition(condition) => {
            let path = trigger.key("recordCondition");
            let known = known_kind(&condition.kind, declared);
            if let Err(message) = &known {
                findings.push(path.key("kind"), message.clone());
            }
            if blank(&condition.condition) {
                findings.push(path.key("condition"), EMPTY);
            } else if let Some(object) = objects.get(condition.kind.as_str()) {
                check_formula(
                    &condition.condition,
                    object,
                    None,
                    path.key("condition"),
                    findings,
                );
            }
            known.ok().map(|()| condition.kind.as_str())
        }
    };
    let actions = at.key("actions");
    if workflow.actions.is_empty() {
        findings.push(actions.clone(), "at least one action is required");
    }
    let is_webhook = matches!(workflow.trigger, Trigger::WebhookEvent(_));
    for (index, action) in workflow.actions.iter().enumerate() {
        let at = actions.index(index);
        match action {
            Action::SetField(set) => {
                let path = at.key("setField");
                let kind = match (&set.kind, is_webhook) {
                    (Some(kind), _) => match known_kind(kind, declared) {
                        Ok(()) => Some(kind.as_str()),
                        Err(message) => {
                            findings.push(path.key("kind"), message);
                            None
                        }
                    },
                    (None, true) => {
                        findings.push(
                            path.key("kind"),
                            "required when the trigger is a webhookEvent",
                        );
                        None
                    }
                    (None, false) => trigger_kind,
                };
                if blank(&set.field) {
                    findings.push(path.key("field"), EMPTY);
                } else if let Some(object) = kind.and_then(|k| objects.get(k))
                    && let Err(message) = writable_field(object, &set.field)
                {
                    findings.push(path.key("field"), message);
                }
            }
            Action::CreateRecord(create) => {
                let path = at.key("createRecord");
                if let Err(message) = known_kind(&create.kind, declared) {
                    findings.push(path.key("kind"), message);
                } else if let Some(object) = objects.get(create.kind.as_str()) {
                    let fields = path.key("fields");
                    for name in create.fields.keys() {
                        if let Err(message) = writable_field(object, name) {
                            findings.push(fields.key(name), message);
                        }
                    }
                    for field in object.fields.iter().filter(|f| f.required) {
                        if !create.fields.contains_key(&field.name) {
                            findings.push(
                                fields.clone(),
                                format!(
                                    "missing required field {:?} of object kind {:?}",
                                    field.name, object.kind
                                ),
                            );
                        }
                    }
                }
            }
            Action::Log(log) => not_blank(&log.message, at.key("log").key("message"), findings),
        }
    }
}

/// A field an action may write: declared on the object and not computed by a formula.
fn writable_field(object: &ObjectSpec, name: &str) -> Result<(), String> {
    match object.fields.iter().find(|f| f.name == name) {
        None => Err(format!(
            "unknown field {name:?} of object kind {:?}",
            object.kind
        )),
        Some(field) if field.r#type == FieldType::Formula => Err(format!(
            "{name:?} is a formula field, computed by the platform"
        )),
        Some(_) => Ok(()),
    }
}
