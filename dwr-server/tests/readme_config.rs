//! The README's configuration table and what `dwr` reads tell the same story: every
//! variable a flag of a command reads, and every variable read besides the flags, has a row;
//! every row names a variable `dwr` reads, with the flag it documents.

use std::collections::{BTreeMap, BTreeSet};

use clap::{Args, Command};
use dwr_server::client::ClientOptions;
use dwr_server::config::ENV_BESIDES_FLAGS;
use dwr_server::{DevArgs, ExecutorArgs, SchedulerArgs};

/// Variable → its flag (`--name`), over the service and client commands.
fn read_by_flags() -> BTreeMap<String, String> {
    let commands = [
        SchedulerArgs::augment_args(Command::new("scheduler")),
        ExecutorArgs::augment_args(Command::new("executor")),
        DevArgs::augment_args(Command::new("dev")),
        ClientOptions::augment_args(Command::new("client")),
    ];
    let mut vars = BTreeMap::new();
    for command in &commands {
        for arg in command.get_arguments() {
            if let (Some(env), Some(long)) = (arg.get_env(), arg.get_long()) {
                let env = env.to_string_lossy().into_owned();
                let flag = format!("--{long}");
                // The client's token flag reads the servers' variable: rows per flag.
                vars.entry(format!("{env} {flag}")).or_insert(flag);
            }
        }
    }
    vars
}

/// The rows of the README's configuration table: (variable, flag or "").
fn readme_rows() -> BTreeSet<(String, String)> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let table = readme
        .split("## Configuration")
        .nth(1)
        .expect("a Configuration section")
        .split("\n## ")
        .next()
        .unwrap();
    table
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            (
                cells[1].trim_matches('`').to_owned(),
                cells[2].trim_matches('`').to_owned(),
            )
        })
        .collect()
}

#[test]
fn every_variable_dwr_reads_has_a_row_and_every_row_is_read() {
    let rows = readme_rows();
    assert!(rows.len() > 30, "the table was not found: {rows:?}");
    let flags = read_by_flags();
    let mut problems = Vec::new();
    for key in flags.keys() {
        let (env, flag) = key.split_once(' ').unwrap();
        if !rows.contains(&(env.to_owned(), flag.to_owned())) {
            problems.push(format!("{env} ({flag}) is read by dwr but has no row"));
        }
    }
    for env in ENV_BESIDES_FLAGS {
        if !rows.iter().any(|(v, _)| v == env) {
            problems.push(format!("{env} is read by dwr but has no row"));
        }
    }
    for (env, flag) in &rows {
        let read = if flag.is_empty() {
            ENV_BESIDES_FLAGS.contains(&env.as_str())
        } else {
            flags.contains_key(&format!("{env} {flag}"))
        };
        if !read {
            problems.push(format!(
                "the row {env} {flag} names a variable dwr does not read under that name"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "README.md's configuration table and dwr disagree:\n{}",
        problems.join("\n")
    );
}
