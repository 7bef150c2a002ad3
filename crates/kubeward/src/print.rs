//! Alert printers: JSON lines for machines, a readable block for people.

use crate::cli::Format;
use detect::alert::{Alert, Severity};
use std::io::{self, Write};

pub struct Printer<W: Write> {
    out: W,
    format: Format,
    color: bool,
    count: usize,
}

/// Control characters in names an API client chose (ESC, newlines, ...) would let a crafted
/// role name repaint the terminal or fake lines of output; they are shown escaped.
fn c(s: &str) -> String {
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

    pub fn finish(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    fn text(&mut self, a: &Alert) -> io::Result<()> {
        let st = Style { on: self.color };
        let sev = match a.severity {
            Severity::Critical => st.paint("1;97;41", " CRITICAL "),
            Severity::High => st.paint("1;31", "HIGH"),
            Severity::Medium => st.paint("1;33", "MEDIUM"),
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
        if !a.actor.groups.is_empty() {
            who.push_str(&format!("  groups: {}", c(&a.actor.groups.join(", "))));
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
        writeln!(o, "  {}", st.dim("grants"))?;
        for g in &a.grants {
            let only = if g.resource_names.is_empty() {
                String::new()
            } else {
                format!("  only pods named {}", c(&g.resource_names.join(", ")))
            };
            writeln!(
                o,
                "    - {:<42} {} on {}{only}",
                st.bold(&g.capability),
                g.verbs.join(","),
                g.resources.join(",")
            )?;
        }
        writeln!(o, "  {}", st.dim("offending rules"))?;
        for r in &a.offending_rules {
            writeln!(o, "    {}", c(r.get()))?;
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
