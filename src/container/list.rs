//! `list`: every container under the root, as a table, ids or JSON.

use serde::Serialize;

use super::state;
use super::{Global, StateOut, state_out};
use crate::error::{Context, Error, Kind, Result};

#[derive(Serialize)]
pub struct ListEntry {
    #[serde(flatten)]
    state: StateOut,
}

pub fn list(g: &Global, json: bool, quiet: bool) -> Result<String> {
    let mut entries = Vec::new();
    match std::fs::read_dir(&g.root) {
        Ok(rd) => {
            for e in rd.flatten() {
                let dir = e.path();
                // `.cache` and other dot entries are ours, not containers.
                if e.file_name().to_string_lossy().starts_with('.') || !dir.is_dir() {
                    continue;
                }
                match state::load(&dir) {
                    Ok(s) => entries.push(state_out(&dir, s)),
                    // A create or delete in progress has no state.json for
                    // a moment; anything else is worth saying (runc warns).
                    Err(err) if err.kind() != Some(Kind::NotFound) || !state::locked(&dir) => {
                        crate::logging::warn(&format!(
                            "list: skipping {}: {err}",
                            e.file_name().to_string_lossy()
                        ));
                    }
                    Err(_) => {}
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(e).ctx(Error::Container, || format!("read {}", g.root.display()));
        }
    }
    entries.sort_by(|a, b| a.id.cmp(&b.id));
    if quiet {
        return Ok(entries.iter().map(|e| format!("{}\n", e.id)).collect());
    }
    if json {
        let list: Vec<ListEntry> = entries
            .into_iter()
            .map(|state| ListEntry { state })
            .collect();
        return Ok(format!(
            "{}\n",
            serde_json::to_string(&list).expect("list serialises")
        ));
    }
    let mut rows = vec![["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"].map(String::from)];
    for e in &entries {
        rows.push([
            e.id.clone(),
            e.pid.to_string(),
            e.status.to_string(),
            e.bundle.display().to_string(),
            e.created.clone(),
            e.owner.clone(),
        ]);
    }
    let widths: Vec<usize> = (0..6)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        for (i, cell) in r.iter().enumerate() {
            if i == 5 {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}   ", width = widths[i]));
            }
        }
        out.push('\n');
    }
    Ok(out)
}
