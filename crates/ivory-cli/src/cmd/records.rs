//! `ivory records export --tenant T --kind K`: the tenant's records as JSON Lines, streamed
//! (memory stays flat whatever the count).

use std::io::{BufWriter, Write};
use std::process::ExitCode;

use futures::TryStreamExt;
use ivory_runtime::Store;
use ivory_runtime::store::Tombstones;

use super::{runtime, usage_error};
use crate::cli::RecordsCommand;

pub(crate) fn run(db: &str, cmd: RecordsCommand) -> anyhow::Result<ExitCode> {
    match cmd {
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
