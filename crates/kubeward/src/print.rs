//! Alert printers: JSON lines for machines, a readable block for people.

use crate::cli::Format;
use detect::alert::{Alert, Grant, PreviousState, Severity};
use rbac::model::BoundSubject;
use std::io::{self, Write};

pub struct Printer<W: Write> {
    out: W,
    format: Format,
    color: bool,
    count: usize,
}

/// Control characters in names an API client chose (ESC, newlines, ...) would let a crafted
/// role name repaint the terminal or fake lines of output; they are shown escaped.
pub fn escape_controls(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    s.chars()
        .map(|ch| {
            if ch.is_control() {
                ch.escape_unicode().to_string()
            } else {
                ch.to_string()
            }
        })
        .collect()
}

use escape_controls as c;

/// Prints an alert unless it is suppressed and those are hidden (`json`: see
/// [`Printer::alert_with_json`]). The first write error is kept in `out_err`, and nothing more
/// is written after it.
pub fn show<W: Write>(
    printer: &mut Printer<W>,
    a: &Alert,
    json: Option<&str>,
    show_suppressed: bool,
    out_err: &mut Option<io::Error>,
) {
    if a.suppressed_by.is_some() && !show_suppressed {
        return;
    }
    if out_err.is_none() {
        if let Err(e) = printer.alert_with_json(a, json) {
            *out_err = Some(e);
        }
    }
}

struct Style {
    on: bool,
}

impl Style {
    fn paint(&self, code: &str, s: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
    fn bold(&self, s: &str) -> String {
        self.paint("1", s)
    }
    fn dim(&self, s: &str) -> String {
        self.paint("2", s)
    }
}

impl<W: Write> Printer<W> {
    pub fn new(out: W, format: Format, color: bool) -> Self {
        Printer {
            out,
            format,
            color,
            count: 0,
        }
    }

    pub fn alert(&mut self, a: &Alert) -> io::Result<()> {
        self.count += 1;
        match self.format {
            Format::Json => {
                serde_json::to_writer(&mut self.out, a)?;
                self.out.write_all(b"\n")
            }
            Format::Text => self.text(a),
        }
    }

    /// Prints an alert; `json` is its JSON text when already made (stateful alerts are
    /// stored as JSON), reused rather than serialized again.
    pub fn alert_with_json(&mut self, a: &Alert, json: Option<&str>) -> io::Result<()> {
        match (self.format, json) {
            (Format::Json, Some(json)) => {
                self.count += 1;
                self.out.write_all(json.as_bytes())?;
                self.out.write_all(b"\n")
            }
            _ => self.alert(a),
        }
    }

    pub fn finish(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// Pushes buffered output to the reader.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    fn text(&mut self, a: &Alert) -> io::Result<()> {
        let st = Style { on: self.color };
        let sev = match a.severity {
            Severity::Critical => st.paint("1;97;41", " CRITICAL "),
            Severity::High => st.paint("1;31", "HIGH"),
            Severity::Medium => st.paint("1;33", "MEDIUM"),
            Severity::Info => st.paint("1;36", "INFO"),
        };
        let o = &mut self.out;
        if self.count > 1 {
            writeln!(o)?;
        }
        let suppressed = a
            .suppressed_by
            .as_deref()
            .map(|s| format!("  {}", st.paint("2;33", &format!("[suppressed: {}]", c(s)))))
            .unwrap_or_default();
        writeln!(
            o,
            "{sev} {} {}{suppressed}",
            st.bold(a.title),
            st.dim(&format!("({})", a.rule_id))
        )?;
        let field = |o: &mut W, k: &str, v: &str| writeln!(o, "  {:<12} {v}", st.dim(k));
        let role = &c(a.role.as_deref().unwrap_or("<unnamed>"));
        field(
            o,
            "role",
            &format!(
                "{}  {}",
                st.bold(role),
                st.dim(&format!(
                    "{} → {}, rules from {}",
                    a.verb,
                    a.response_code.map_or("?".into(), |c| c.to_string()),
                    serde_json::to_value(a.rules_source)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default()
                ))
            ),
        )?;
        let mut when = c(a.time.as_deref().unwrap_or("time unknown"));
        if let Some(cl) = &a.cluster {
            when.push_str(&format!("  cluster {}", c(cl)));
        }
        field(o, "when", &when)?;
        let user = &c(a.actor.username.as_deref().unwrap_or("<unknown user>"));
        let mut who = st.bold(user);
        match &a.actor.groups {
            Some(g) if !g.is_empty() => who.push_str(&format!("  groups: {}", c(&g.join(", ")))),
            Some(_) => {}
            // Not logged (GKE): saying nothing would read as "no groups".
            None => who.push_str("  groups: unknown (not in the log)"),
        }
        field(o, "actor", &who)?;
        if let Some(imp) = &a.impersonated_user {
            field(
                o,
                "impersonated",
                &format!(
                    "{} (the actor acted as this identity)",
                    c(imp.username.as_deref().unwrap_or("?"))
                ),
            )?;
        }
        let mut from = if a.source_ips.is_empty() {
            "unknown address".to_string()
        } else {
            c(&a.source_ips.join(", "))
        };
        if let Some(ua) = &a.user_agent {
            from.push_str(&format!("  agent {}", c(ua)));
        }
        field(o, "from", &from)?;
        if let Some(u) = &a.request_uri {
            field(o, "request", &c(u))?;
        }
        let mut id = c(a.audit_id.as_deref().unwrap_or("no auditID"));
        if let Some(s) = &a.source {
            id.push_str(&format!("  at {}:{}", c(&s.path), s.line));
            if let Some(i) = s.item {
                id.push_str(&format!(" item {i}"));
            }
        }
        field(o, "audit id", &id)?;
        if let Some(b) = &a.binding {
            let ns = a
                .namespace
                .as_deref()
                .map(|n| format!(" in namespace {}", c(n)))
                .unwrap_or_default();
            field(
                o,
                "binding",
                &format!(
                    "{} {}{ns}",
                    a.binding_kind.unwrap_or("binding"),
                    st.bold(&c(b))
                ),
            )?;
        }
        if let Some(p) = a.context.previous_state {
            let text = match p {
                PreviousState::Absent => "the object was created",
                PreviousState::Known => "known: only what the change added is reported",
                PreviousState::Unknown => "unknown: everything the object grants is reported",
            };
            field(o, "before", text)?;
        }
        let grants_title = if a.context.newly_granted.is_some() {
            "grants (all of the role's pod write)"
        } else {
            "grants"
        };
        let grant_lines = |o: &mut W, gs: &[Grant], indent: &str| -> io::Result<()> {
            for g in gs {
                let only = if g.resource_names.is_empty() {
                    String::new()
                } else {
                    format!("  only pods named {}", c(&g.resource_names.join(", ")))
                };
                writeln!(
                    o,
                    "{indent}- {:<42} {} on {}{only}",
                    st.bold(&g.capability),
                    g.verbs.join(","),
                    g.resources.join(",")
                )?;
            }
            Ok(())
        };
        if let Some(n) = &a.context.newly_granted {
            writeln!(o, "  {}", st.dim("newly granted"))?;
            grant_lines(o, n, "    ")?;
        }
        if let Some(aggs) = &a.context.aggregated_into {
            writeln!(o, "  {}", st.dim("aggregated into"))?;
            for g in aggs {
                writeln!(o, "    {} gains:", st.bold(&c(&g.role)))?;
                grant_lines(o, &g.newly_granted, "      ")?;
                if !g.bound_subjects.is_empty() {
                    writeln!(o, "      held by: {}", c(&subjects(&g.bound_subjects)))?;
                }
            }
        }
        if let Some(subs) = &a.context.subjects_granted {
            writeln!(o, "  {}", st.dim("subjects given pod write"))?;
            for s in subs {
                let who = match &s.namespace {
                    Some(ns) if s.kind == "ServiceAccount" => {
                        format!("ServiceAccount {ns}/{}", s.name)
                    }
                    _ => format!("{} {}", s.kind, s.name),
                };
                writeln!(o, "    {}", st.bold(&c(&who)))?;
                grant_lines(o, &s.newly_granted, "      ")?;
            }
        }
        if a.context.aggregated_into.is_none()
            && a.context.subjects_granted.is_none()
            && !a.grants.is_empty()
        {
            writeln!(o, "  {}", st.dim(grants_title))?;
            grant_lines(o, &a.grants, "    ")?;
        }
        if !a.offending_rules.is_empty() {
            writeln!(o, "  {}", st.dim("offending rules"))?;
            for r in &a.offending_rules {
                writeln!(o, "    {}", c(r.get()))?;
            }
        }
        if let Some(prev) = &a.context.previous_rules {
            writeln!(o, "  {}", st.dim("previous rules"))?;
            if prev.is_empty() {
                writeln!(o, "    (none)")?;
            }
            for r in prev {
                writeln!(o, "    {}", c(&r.to_string()))?;
            }
        }
        if let Some(b) = &a.context.bound_subjects {
            let text = if b.is_empty() {
                "nobody (no binding names the role)".to_string()
            } else {
                subjects(b)
            };
            field(o, "bound to", &c(&text))?;
        }
        if let Some(r) = &a.context.role_admins {
            let list: Vec<String> = r
                .iter()
                .map(|g| match &g.namespace {
                    Some(ns) => format!("{} {ns}/{}", g.kind, g.name),
                    None => format!("{} {}", g.kind, g.name),
                })
                .collect();
            field(o, "role admins", &c(&list.join(", ")))?;
        }
        if let Some(r) = &a.context.actor_recent_changes {
            if !r.is_empty() {
                let total = a
                    .context
                    .actor_recent_changes_total
                    .unwrap_or(r.len() as u64);
                let head = if total > r.len() as u64 {
                    format!(
                        "actor's RBAC changes in the hour before (latest {} of {total})",
                        r.len()
                    )
                } else {
                    "actor's RBAC changes in the hour before".to_string()
                };
                writeln!(o, "  {}", st.dim(&head))?;
                for ch in r {
                    let ns = ch
                        .namespace
                        .as_deref()
                        .map(|n| format!("{n}/"))
                        .unwrap_or_default();
                    writeln!(
                        o,
                        "    {} {} {} {ns}{}",
                        c(&ch.time),
                        c(&ch.verb),
                        c(&ch.kind),
                        c(&ch.name)
                    )?;
                }
            }
        }
        writeln!(o, "  {}", st.dim("why it matters"))?;
        for w in &a.why {
            writeln!(o, "    • {}", c(w))?;
        }
        writeln!(o, "  {}", st.dim("investigate"))?;
        for (i, s) in a.investigation.iter().enumerate() {
            writeln!(o, "    {}. {}", i + 1, c(s))?;
        }
        writeln!(o, "  {}", st.dim("resolve"))?;
        for (i, s) in a.resolution.iter().enumerate() {
            writeln!(o, "    {}. {}", i + 1, c(s))?;
        }
        if !a.least_privilege_rules.is_empty() {
            writeln!(o, "  {}", st.dim("least-privilege rules"))?;
            for r in &a.least_privilege_rules {
                writeln!(o, "    {}", c(&r.to_string()))?;
            }
        }
        if !a.notes.is_empty() {
            writeln!(o, "  {}", st.dim("notes"))?;
            for n in &a.notes {
                writeln!(o, "    - {}", c(n))?;
            }
        }
        Ok(())
    }
}

/// Subjects as one line: `Group system:masters (ClusterRoleBinding cluster-admin)`.
fn subjects(list: &[BoundSubject]) -> String {
    list.iter()
        .map(|s| {
            let who = match &s.namespace {
                Some(ns) if s.kind == "ServiceAccount" => format!("ServiceAccount {ns}/{}", s.name),
                _ => format!("{} {}", s.kind, s.name),
            };
            let scope = s
                .scope_namespace
                .as_deref()
                .map(|n| format!(" in {n}"))
                .unwrap_or_default();
            format!("{who} ({} {}{scope})", s.binding_kind, s.binding)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The abilities of `grants` in plain words for a text line, `; `-separated, each with the
/// names it is restricted to (shared by `kubeward git` and `kubeward scan`).
pub fn grant_words(grants: &[detect::alert::Grant]) -> String {
    grants
        .iter()
        .map(|g| {
            if g.resource_names.is_empty() {
                g.capability.clone()
            } else {
                format!(
                    "{} (only {})",
                    g.capability,
                    escape_controls(&g.resource_names.join(", "))
                )
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}
