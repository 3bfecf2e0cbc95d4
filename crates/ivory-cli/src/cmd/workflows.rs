//! `ivory workflows retry RUN` and `ivory workflows runs --tenant T`.
//!
//! Exit codes: 0 the run succeeded (now or before); 1 it failed again (the error on stderr) or
//! does not exist; 2 usage errors.

use std::process::ExitCode;

use ivory_runtime::Store;
use ivory_runtime::workflows::WorkflowRunStatus;
use ivory_sdk::Clock;

use super::runtime;
use crate::cli::WorkflowsCommand;

pub(crate) fn run(db: &str, cmd: WorkflowsCommand) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let store = Store::open(db).await?;
        let code = match cmd {
            WorkflowsCommand::Retry { run } => match store.retry_workflow_run(&run, Clock::system().now()).await {
                Ok(done) if done.status == WorkflowRunStatus::Succeeded => {
                    println!("workflow run {} ({}): succeeded", done.id, done.workflow);
                    ExitCode::SUCCESS
                }
                Ok(done) => {
                    eprintln!(
                        "error: workflow run {} ({}) failed again: {}",
                        done.id,
                        done.workflow,
                        done.error.as_deref().unwrap_or("no error recorded")
                    );
                    ExitCode::from(1)
                }
                Err(error) => {
                    eprintln!("error: {error}");
                    ExitCode::from(1)
                }
            },
            WorkflowsCommand::Runs { tenant, json } => {
                let runs = store.workflow_runs(&tenant).await?;
                if json {
                    let items: Vec<_> = runs
                        .iter()
                        .map(|r| serde_json::json!({"id": r.id, "workflow": r.workflow, "status": format!("{:?}", r.status).to_lowercase(), "delivery_id": r.delivery_id, "error": r.error}))
                        .collect();
                    println!("{}", serde_json::Value::Array(items));
                } else {
                    for r in &runs {
                        println!("{:<34} {:<28} {:<10} {}", r.id, r.workflow, format!("{:?}", r.status).to_lowercase(), r.error.as_deref().unwrap_or(""));
                    }
                }
                ExitCode::SUCCESS
            }
        };
        store.close().await;
        Ok(code)
    })
}
