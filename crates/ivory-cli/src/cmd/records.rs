//! `ivory records export --tenant T --kind K`: the tenant's records as JSON Lines, streamed
//! (memory stays flat whatever the count).

use std::io::{BufWriter, Write};
use std::process::ExitCode;

use futures::TryStreamExt;
use ivory_runtime::Store;
use ivory_runtime::objects::FieldInput;
use ivory_runtime::store::Tombstones;

use super::{runtime, usage_error};
use crate::cli::RecordsCommand;

pub(crate) fn run(db: &str, cmd: RecordsCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        RecordsCommand::Update {
            tenant,
            kind,
            id,
            sets,
            json,
        } => update(db, &tenant, &kind, &id, &sets, json),
        RecordsCommand::Export {
            tenant,
            kind,
            include_deleted,
        } => {
            if let Err(reason) = ivory_sdk::record::validate_kind(&kind) {
                return Ok(usage_error(format!("--kind: {reason}")));
            }
            runtime()?.block_on(async {
                let store = Store::open(db).await?;
                let deleted = if include_deleted {
                    Tombstones::Include
                } else {
                    Tombstones::Exclude
                };
                let mut out = BufWriter::new(std::io::stdout().lock());
                let mut records = store.export_records(&tenant, &kind, deleted);
                while let Some(record) = records.try_next().await? {
                    let written = serde_json::to_writer(&mut out, &record)
                        .map_err(std::io::Error::from)
                        .and_then(|()| out.write_all(b"\n"));
                    if let Err(error) = written {
                        // The reader went away (`| head`): not an error of ours.
                        if error.kind() == std::io::ErrorKind::BrokenPipe {
                            return Ok(ExitCode::SUCCESS);
                        }
                        return Err(error.into());
                    }
                }
                match out.flush() {
                    Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => {
                        Err(error.into())
                    }
                    _ => Ok(ExitCode::SUCCESS),
                }
            })
        }
    }
}

fn update(
    db: &str,
    tenant: &str,
    kind: &str,
    id: &str,
    sets: &[String],
    json: bool,
) -> anyhow::Result<ExitCode> {
    let mut fields = Vec::with_capacity(sets.len());
    for set in sets {
        let Some((field, value)) = set.split_once('=') else {
            return Ok(usage_error(format!("--set {set:?}: expected FIELD=VALUE")));
        };
        fields.push((field.trim().to_owned(), FieldInput::Text(value.to_owned())));
    }
    runtime()?.block_on(async {
        let store = Store::open(db).await?;
        let result = store
            .update_record_fields(tenant, kind, id, &fields, &super::actor(), ivory_sdk::Clock::system().now())
            .await;
        store.close().await;
        match result {
            Ok(update) => {
                if json {
                    println!(
                        "{}",
                        serde_json::json!({"id": update.id, "kind": update.kind, "version": update.version, "changed": update.changed, "data": update.data, "workflow_runs": update.runs.iter().map(|r| &r.id).collect::<Vec<_>>()})
                    );
                } else if update.changed.is_empty() {
                    println!("unchanged: {kind} {id}");
                } else {
                    println!("updated: {kind} {id} (version {}): {}", update.version, update.changed.join(", "));
                    for run in &update.runs {
                        println!("workflow {} ran: {:?}", run.workflow, run.status);
                    }
                }
                Ok(ExitCode::SUCCESS)
            }
            Err(error) if error.is_refusal() => {
                eprintln!("error: {error}");
                Ok(ExitCode::from(2))
            }
            Err(error) => Err(error.into()),
        }
    })
}
