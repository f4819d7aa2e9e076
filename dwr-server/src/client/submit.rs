//! `dwr submit IMAGE [options] -- COMMAND [ARGS...]`: build the request, submit it, and
//! optionally wait for the job or follow its logs.

use std::collections::BTreeMap;
use std::time::Duration;

use dwr_core::{Dependency, VolumeMount};

use super::args::{parse_cpus, parse_duration, parse_env, parse_memory_mib};
use super::logs::{exit_code_of, final_note, follow_to_end, StatusReporter};
use super::ClientError;
use dwr_client::wire::ArrayRequest;
use dwr_client::{to_pretty_json, Client, JobRequest};
use dwr_core::arrays::MAX_ARRAY_TASKS;

/// Arguments of `dwr submit`.
#[derive(Debug, Clone, clap::Args)]
pub struct SubmitArgs {
    /// Docker image to run, e.g. `dwr-test/busybox:latest`.
    #[arg(value_name = "IMAGE")]
    pub image: String,
    /// CPU cores (fractions allowed: 0.5).
    #[arg(long, value_name = "N", default_value = "1", value_parser = parse_cpus)]
    pub cpus: f64,
    /// Memory with a unit: 512m, 1g, 1.5g (binary: 1g = 1024m).
    #[arg(long, value_name = "SIZE", default_value = "1g", value_parser = parse_memory_mib)]
    pub memory: u64,
    /// GPU devices (with no --gpu-type, any model).
    #[arg(long, value_name = "N")]
    pub gpus: Option<u32>,
    /// GPU model rule: `any` or a model name such as A100 (one GPU unless --gpus says more).
    #[arg(long, value_name = "any|MODEL")]
    pub gpu_type: Option<String>,
    /// Environment variable for the container (repeatable).
    #[arg(short, long = "env", value_name = "KEY=VALUE", value_parser = parse_env)]
    pub env: Vec<(String, String)>,
    /// A region the job may run in (repeatable; none: any).
    #[arg(long = "region", value_name = "REGION")]
    pub regions: Vec<String>,
    /// A datacenter the job may run in (repeatable; none: any).
    #[arg(long = "datacenter", value_name = "DC")]
    pub datacenters: Vec<String>,
    /// Host path to mount (repeatable): /host:/container[:ro|rw]; executors refuse mounts
    /// outside their allow-list.
    #[arg(short, long = "volume", value_name = "HOST:CONTAINER[:ro]", value_parser = parse_volume)]
    pub volumes: Vec<String>,
    /// How long the job may wait for room before it fails: seconds, or 90s, 5m, 1h.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub allocation_timeout: Option<Duration>,
    /// How long the job may run before it is stopped and failed: seconds, or 30m, 2h.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub max_runtime: Option<Duration>,
    /// Retries after a failed first attempt (0..=100; default 0).
    #[arg(long, value_name = "N")]
    pub max_retries: Option<u32>,
    /// Wait before the first retry, doubling for each later one up to 10m: seconds, or 30s,
    /// 2m (default 10s).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub retry_backoff: Option<Duration>,
    /// A failure to retry (repeatable; default all): executor_lost, start_failed,
    /// exit_nonzero, oom.
    #[arg(long = "retry-on", value_name = "CAUSE", value_parser = parse_retry_cause)]
    pub retry_on: Vec<String>,
    /// Run the container with a read-only root filesystem (volumes keep their own mode).
    #[arg(long)]
    pub read_only_rootfs: bool,
    /// Priority, 0 (lowest) to 100 [default: 50]: a pending job of higher priority is placed
    /// first.
    #[arg(long, value_name = "0-100",
          value_parser = clap::value_parser!(u32).range(0..=i64::from(dwr_core::spec::MAX_PRIORITY)))]
    pub priority: Option<u32>,
    /// The queue the job waits in [default: default] (`dwr queues` lists them).
    #[arg(long, value_name = "NAME")]
    pub queue: Option<String>,
    /// Start only once these jobs succeeded (Slurm's afterok); a failure of one fails this
    /// job.
    #[arg(long, value_name = "ID[,ID...]", value_delimiter = ',',
          conflicts_with_all = ["after_any", "after_notok"])]
    pub after: Vec<String>,
    /// Start once these jobs ended, however (afterany).
    #[arg(
        long = "after-any",
        value_name = "ID[,ID...]",
        value_delimiter = ',',
        conflicts_with = "after_notok"
    )]
    pub after_any: Vec<String>,
    /// Start once these jobs ended and at least one did not succeed (afternotok).
    #[arg(long = "after-notok", value_name = "ID[,ID...]", value_delimiter = ',')]
    pub after_notok: Vec<String>,
    /// Submit an array of tasks, Slurm's syntax: `0-99` for 100 tasks (indexes 0 to 99,
    /// each in DWR_ARRAY_INDEX), `0-99%10` for at most 10 under way at once. Prints the
    /// array's id; `--wait` waits for every task.
    #[arg(long, value_name = "0-N[%P]", value_parser = parse_array, conflicts_with = "follow")]
    pub array: Option<ArrayRequest>,
    /// The submit's idempotency key (default: a new random one). The submit is sent again
    /// with it when the server cannot be reached or does not answer in time, so a retried
    /// submit never creates a second job.
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<String>,
    /// Wait until the job ends; exit with its exit code (1 if it failed without one).
    #[arg(long)]
    pub wait: bool,
    /// Stream the job's logs until it ends (saying why while it is pending); implies --wait.
    #[arg(short, long)]
    pub follow: bool,
    /// The command and its arguments, after `--` (not run through a shell).
    #[arg(value_name = "COMMAND", required = true, last = true, num_args = 1..)]
    pub command: Vec<String>,
}

/// Checks a retry cause here, so a typo is refused before anything is sent.
fn parse_retry_cause(text: &str) -> Result<String, String> {
    text.parse::<dwr_core::RetryCause>()
        .map(|c| c.as_str().to_owned())
        .map_err(|e| e.to_string())
}

/// Checks `host:container[:ro|rw]` here, so a typo is refused before anything is sent.
fn parse_volume(text: &str) -> Result<String, String> {
    text.parse::<VolumeMount>()
        .map(|_| text.to_owned())
        .map_err(|e| e.to_string())
}

impl SubmitArgs {
    /// The `POST /jobs` body these arguments describe.
    pub fn to_request(&self) -> JobRequest {
        let env: BTreeMap<String, String> = self.env.iter().cloned().collect();
        let some_vec = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
        JobRequest {
            docker_image: self.image.clone(),
            command: self.command.clone(),
            cpu_cores: self.cpus,
            memory_gb: None,
            memory_mb: Some(self.memory),
            gpu_type: self.gpu_type.clone(),
            gpu_count: self.gpus,
            allocation_timeout: self.allocation_timeout.map(|d| d.as_secs()),
            eligible_regions: some_vec(&self.regions),
            eligible_datacenters: some_vec(&self.datacenters),
            volumes: some_vec(&self.volumes),
            env: (!env.is_empty()).then_some(env),
            max_runtime_seconds: self.max_runtime.map(|d| d.as_secs()),
            max_retries: self.max_retries,
            retry_backoff_seconds: self.retry_backoff.map(|d| d.as_secs()),
            retry_on: some_vec(&self.retry_on),
            read_only_rootfs: self.read_only_rootfs.then_some(true),
            priority: self.priority,
            queue: self.queue.clone(),
            depends_on: [&self.after, &self.after_any, &self.after_notok]
                .into_iter()
                .find_map(some_vec),
            dependency: [
                (&self.after_any, Dependency::AfterAny),
                (&self.after_notok, Dependency::AfterNotOk),
            ]
            .into_iter()
            .find(|(ids, _)| !ids.is_empty())
            .map(|(_, kind)| kind.as_str().to_owned()),
            array: self.array.clone(),
        }
    }
}

/// `--array 0-N[%P]`: tasks 0 to N, at most P at once.
fn parse_array(text: &str) -> Result<ArrayRequest, String> {
    let (range, parallelism) = match text.split_once('%') {
        Some((range, p)) => (range, Some(p)),
        None => (text, None),
    };
    let (first, last) = range
        .split_once('-')
        .ok_or_else(|| format!("{text:?} is not a range: write 0-99 (or 0-99%10)"))?;
    if first.trim() != "0" {
        return Err(format!(
            "{text:?}: an array's indexes start at 0 (write 0-{})",
            last.trim()
        ));
    }
    let last: u32 = last
        .trim()
        .parse()
        .map_err(|_| format!("{text:?}: {last:?} is not a whole number"))?;
    let count = last
        .checked_add(1)
        .filter(|&n| n <= MAX_ARRAY_TASKS)
        .ok_or_else(|| format!("{text:?}: at most {MAX_ARRAY_TASKS} tasks"))?;
    let parallelism = parallelism
        .map(|p| match p.trim().parse::<u32>() {
            Ok(p) if p > 0 => Ok(p),
            _ => Err(format!(
                "{text:?}: after % comes how many at once, at least 1"
            )),
        })
        .transpose()?;
    Ok(ArrayRequest { count, parallelism })
}

/// Submits the job; prints its id (or its JSON); with `--wait`/`--follow` stays until it ends
/// and returns its exit code.
pub async fn run(api: &Client, args: &SubmitArgs, json: bool) -> Result<i32, ClientError> {
    if args.array.is_some() {
        return run_array(api, args, json).await;
    }
    // A server that cannot be reached is tried again with the same key: at most one job.
    let job = match &args.idempotency_key {
        Some(key) => api.submit_with_key(&args.to_request(), key).await?,
        None => api.submit(&args.to_request()).await?,
    };
    let id = job.id()?;
    if !(args.wait || args.follow) {
        let text = if json {
            to_pretty_json(&job) + "\n"
        } else {
            format!("{id}\n")
        };
        super::print(&text)?;
        return Ok(0);
    }
    // Waiting: stdout gets the id first (people) or only the final job (scripts, --json).
    if !json {
        super::print(&format!("{id}\n"))?;
    }
    let done = if args.follow && json {
        // Scripts get one JSON document on stdout; the log lines go to stderr.
        follow_to_end(api, id, &mut std::io::stderr()).await?
    } else if args.follow {
        follow_to_end(api, id, &mut std::io::stdout()).await?
    } else {
        let mut reporter = StatusReporter::default();
        api.wait(id, reporter.printer()).await?
    };
    if json {
        super::print(&(to_pretty_json(&done) + "\n"))?;
    } else {
        eprintln!("{}", final_note(&done));
    }
    Ok(exit_code_of(&done))
}

/// `dwr submit --array`: prints the array's id (or its JSON); with `--wait`, polls until
/// every task ended and exits 0 when all succeeded, 1 otherwise.
async fn run_array(api: &Client, args: &SubmitArgs, json: bool) -> Result<i32, ClientError> {
    let key = args
        .idempotency_key
        .clone()
        .unwrap_or_else(|| dwr_core::JobId::new().to_string());
    let array = api.submit_array_with_key(&args.to_request(), &key).await?;
    let id: dwr_core::JobId = array
        .array_job_id
        .parse()
        .map_err(|e: dwr_core::MalformedJobId| ClientError::Output(std::io::Error::other(e)))?;
    if !args.wait {
        let text = if json {
            to_pretty_json(&array) + "\n"
        } else {
            format!("{id}\n")
        };
        super::print(&text)?;
        return Ok(0);
    }
    if !json {
        super::print(&format!("{id}\n"))?;
    }
    let mut done = array;
    while !done.ended() {
        tokio::time::sleep(ARRAY_POLL).await;
        done = api.array(id).await?;
    }
    let c = &done.status_counts;
    if json {
        super::print(&(to_pretty_json(&done) + "\n"))?;
    } else {
        eprintln!(
            "array {id} {}: {} succeeded, {} failed, {} aborted of {}",
            done.status, c.succeeded, c.failed, c.aborted, done.count
        );
    }
    Ok(i32::from(done.status != "succeeded"))
}

/// How often `dwr submit --array --wait` asks how the array stands.
const ARRAY_POLL: Duration = Duration::from_millis(500);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{ClientCommand, ClientOptions};
    use clap::Parser;
    use dwr_core::JobId;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        command: ClientCommand,
        #[command(flatten)]
        options: ClientOptions,
    }

    fn parse(line: &str) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("dwr").chain(line.split_whitespace()))
    }

    fn submit(line: &str) -> SubmitArgs {
        match parse(line)
            .unwrap_or_else(|e| panic!("{line}: {e}"))
            .command
        {
            ClientCommand::Submit(args) => *args,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_full_submit_line_becomes_the_request() {
        let args = submit(
            "submit img:1 --cpus 0.5 --memory 1.5g --gpus 2 --gpu-type A100 -e A=1 \
             --env B=x=y --region eu --region us --datacenter dc1 -v /data:/in:ro \
             --allocation-timeout 5m --max-runtime 90 --read-only-rootfs --priority 80 --queue research --wait \
             -- sh -c echo --not-a-flag",
        );
        let r = args.to_request();
        assert_eq!(r.docker_image, "img:1");
        assert_eq!(r.command, ["sh", "-c", "echo", "--not-a-flag"]);
        assert_eq!(
            (r.cpu_cores, r.memory_mb, r.memory_gb),
            (0.5, Some(1536), None)
        );
        assert_eq!(
            (r.gpu_count, r.gpu_type.as_deref()),
            (Some(2), Some("A100"))
        );
        let env = r.env.clone().unwrap();
        assert_eq!((env["A"].as_str(), env["B"].as_str()), ("1", "x=y"));
        assert_eq!(r.eligible_regions, Some(vec!["eu".into(), "us".into()]));
        assert_eq!(r.eligible_datacenters, Some(vec!["dc1".into()]));
        assert_eq!(r.volumes, Some(vec!["/data:/in:ro".into()]));
        assert_eq!(
            (r.allocation_timeout, r.max_runtime_seconds),
            (Some(300), Some(90))
        );
        assert_eq!(r.read_only_rootfs, Some(true));
        assert!(args.wait && !args.follow);
        // What the server will make of it: a valid spec.
        let spec = r.into_spec().expect("the server accepts it");
        assert_eq!(
            (spec.cpu_millis, spec.memory_mib, spec.gpu.count),
            (500, 1536, 2)
        );
        assert!(spec.read_only_rootfs);
        assert_eq!((args.to_request().priority, spec.priority), (Some(80), 80));
        assert_eq!(spec.queue, "research");
        assert!(spec.depends_on.is_empty());
    }

    #[test]
    fn array_takes_slurms_range_and_parallelism() {
        let r = submit("submit img --array 0-99%10 -- true").to_request();
        assert_eq!(
            r.array,
            Some(ArrayRequest {
                count: 100,
                parallelism: Some(10)
            })
        );
        let r = submit("submit img --array 0-0 -- true").to_request();
        assert_eq!(
            r.array,
            Some(ArrayRequest {
                count: 1,
                parallelism: None
            })
        );
        for (bad, needle) in [
            ("1-10", "start at 0"),
            ("0-x", "whole number"),
            ("10", "not a range"),
            ("0-9%0", "at least 1"),
            ("0-10000", "at most 10000"),
        ] {
            let e = parse(&format!("submit img --array {bad} -- true")).unwrap_err();
            assert!(e.to_string().contains(needle), "{bad}: {e}");
        }
        assert!(
            parse("submit img --array 0-9 --follow -- true").is_err(),
            "no --follow"
        );
    }

    #[test]
    fn after_names_the_dependencies_and_their_type() {
        let (a, b) = (JobId::new(), JobId::new());
        for (flag, kind) in [
            ("--after", Dependency::AfterOk),
            ("--after-any", Dependency::AfterAny),
            ("--after-notok", Dependency::AfterNotOk),
        ] {
            let line = format!("submit img {flag} {a},{b} -- true");
            let spec = submit(&line).to_request().into_spec().unwrap();
            assert_eq!(
                (spec.depends_on, spec.dependency),
                (vec![a, b], kind),
                "{flag}"
            );
        }
        let both = format!("submit img --after {a} --after-any {b} -- true");
        assert!(parse(&both).is_err(), "one type at a time");
    }

    #[test]
    fn defaults_are_one_cpu_and_one_gigabyte() {
        let r = submit("submit img -- true").to_request();
        assert_eq!((r.cpu_cores, r.memory_mb), (1.0, Some(1024)));
        assert_eq!((r.gpu_count, &r.gpu_type, &r.env), (None, &None, &None));
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!((r.eligible_regions, r.volumes), (None, None));
        assert_eq!(r.read_only_rootfs, None, "a writable root unless asked");
        assert!(
            json.get("gpu_type").is_none(),
            "unset fields are left out: {json}"
        );
    }

    #[test]
    fn bad_values_are_named() {
        for (line, names) in [
            ("submit img --memory 2 -- true", "--memory"),
            ("submit img --memory 1x -- true", "1x"),
            ("submit img --cpus 0 -- true", "--cpus"),
            ("submit img --priority 101 -- true", "--priority"),
            ("submit img --env NOPE -- true", "NOPE"),
            ("submit img -v rel:/x -- true", "rel:/x"),
            ("submit img --allocation-timeout 5w -- true", "5w"),
            ("submit img --gpus many -- true", "--gpus"),
            ("submit img", "COMMAND"),
            ("jobs --limit 0", "--limit"),
            ("jobs --limit 5000", "5000"),
            ("jobs --status done", "done"),
        ] {
            let err = parse(line).expect_err(line).to_string();
            assert!(err.contains(names), "{line}: {err}");
        }
    }

    #[test]
    fn options_are_global_and_follow_implies_waiting() {
        let cli = parse("jobs --status RUNNING --limit 5 --json --url http://127.0.0.1:9").unwrap();
        assert!(cli.options.json);
        assert_eq!(cli.options.url, "http://127.0.0.1:9");
        match cli.command {
            ClientCommand::Jobs(a) => {
                assert_eq!((a.status, a.limit), (Some(dwr_core::JobState::Running), 5))
            }
            other => panic!("{other:?}"),
        }
        assert!(submit("submit -f img -- true").follow);
        match parse("logs -f 67e55044-10b1-426f-9247-bb680e5fe0c8")
            .unwrap()
            .command
        {
            ClientCommand::Logs { follow, .. } => assert!(follow),
            other => panic!("{other:?}"),
        }
    }
}
