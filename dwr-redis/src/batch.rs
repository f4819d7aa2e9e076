//! Group commit: concurrent calls of one script coalesce into a single call of its batch
//! form.
//!
//! Each script call costs Redis a fixed price (look up the script, set up the Lua call,
//! convert the reply) that on a small host is most of the work of a transition, plus a
//! round trip and a wake-up at the client. A [`Coalescer`] owns one background task per
//! script: a caller queues its arguments and awaits its own reply; the task sends whatever
//! is queued as one call of the batch form (at most [`MAX_OPS`]), then the next lot.
//! Alone, an operation goes out at once as the plain script, exactly as without batching;
//! under load, the operations that arrive while one call is in flight share the next one.
//!
//! The batch form (see [`batch_form`]) holds the bodies of every script of [`Batched`] and
//! runs each operation's, inside `pcall`, in queue order: every operation is still checked
//! and applied atomically, sees the effects of the ones before it, and gets the reply it
//! would have got alone. One coalescer may carry operations of several scripts (the store
//! sends a job's transitions through one): a call then carries whatever is queued of any of
//! them, and its fixed price (the call, the clock, the counters and executors it writes
//! back) is shared by all.
//!
//! An operation once queued is sent even if its caller stops waiting, as a request already
//! written to the connection would be; callers treat a lost answer as "maybe applied"
//! either way (the transitions are checked, and the agent retries idempotently).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use dwr_core::StoreError;
use redis::{RedisError, Value};
use tokio::sync::{mpsc, oneshot};

use crate::endpoint::Endpoint;
use crate::error::{corrupt, is_unavailable, store_error};
use crate::scripts::Routine;

/// Most operations one batch call carries: bounds how long one call holds Redis (each
/// transition runs in tens of microseconds, so a full batch is a few milliseconds).
pub(crate) const MAX_OPS: usize = 128;

/// A batch stops taking operations once it carries this many arguments (log lines make
/// some operations large); an operation larger than that alone still goes, alone.
pub(crate) const MAX_ARGS: usize = 8_192;

/// The status an operation of a batch replies with when its script raised an error.
const SCRIPT_ERROR: &str = "script_error";

/// The two ways a script's body is run, defined after the helpers (`common.lua`) in every
/// script and once in the store's function library ([`crate::scripts`]).
///
/// `run_single(op, ARGV)` runs the body `op` for one operation: then the writes it
/// deferred are made (`flush_deferred()` in `common.lua`, also when it raised an error:
/// what it wrote before stays, as Redis keeps a script's writes) and schedulers are woken
/// if it asked for it (`wake()`).
///
/// `run_batch(ops, ARGV)` runs the body of each operation of a batch (`ops[n]`, the body of
/// script number `n` of [`Batched`]). The batch's `ARGV` is the key prefix followed by, for
/// each operation, its argument count times 8 plus its script's number (one argument: each
/// costs the server about as much as a small command's own work), then its arguments (the
/// prefix is not repeated); the reply is the operations' replies as one flat array (each
/// its item count, then its items: see [`unflatten`]), an error raised by one operation
/// becoming `{"script_error", message}` in its place. The writes
/// the operations deferred are made once, after every operation, and schedulers are woken
/// once, if any asked for it.
///
/// Both start with `begin_call` (the prefix, and no state left from an earlier call) and
/// end with `end_call`.
pub(crate) fn runners() -> String {
    format!(
        "\
local function end_call()
  flush_deferred()
  if WOKEN then rcall('PUBLISH', CH_WAKE, 'wake') end
  if CHANGES[1] then rcall('PUBLISH', CH_CHANGES, table.concat(CHANGES, '\\n')) end
end
local function run_single(op, ARGV)
  begin_call(ARGV[1])
  local ok, r = pcall(op, ARGV)
  end_call()
  if not ok then
    -- The server cannot take writes: answered with that error, its code kept (raising it
    -- again would turn it into an ERR).
    local message = error_message(r)
    if unavailable(message) then return redis.error_reply(message) end
    error(r, 0)
  end
  return r
end
local function run_batch(ops, argv)
  begin_call(argv[1])
  -- The replies, flat: each operation's item count, then its items. A table per
  -- operation cost the server some 5,000 instructions to send: it probes every table for
  -- `err`, `ok`, `double` and the other RESP3 shapes before reading it as an array.
  local out, len, i = {{}}, 0, 2
  -- One argument table, refilled for each operation (no body keeps it past its call).
  local a, used = {{ argv[1] }}, 1
  local last = #argv
  while i <= last do
    -- The operation's script and argument count, in one number: count * 8 + script.
    local code = num(argv[i])
    local script = code % 8
    local op, n = ops[script], (code - script) / 8
    for j = 1, n do a[j + 1] = argv[i + j] end
    for j = n + 2, used do a[j] = nil end
    used = n + 1
    local ok, r = pcall(op, a)
    if not ok then
      r = error_message(r)
      -- A server that cannot take writes now refuses the first write of the first
      -- operation, before any is applied: the whole call fails with that error, so that
      -- every caller hears the store is unavailable.
      if unavailable(r) then return redis.error_reply(r) end
      r = {{ '{SCRIPT_ERROR}', r }}
    end
    if type(r) == 'table' then
      -- Up to the first nil, as Redis reads a table.
      local at, k = len + 1, 1
      while r[k] ~= nil do
        out[at + k] = r[k]
        k = k + 1
      end
      out[at] = k - 1
      len = at + k - 1
    else
      out[len + 1], out[len + 2] = 1, r
      len = len + 2
    end
    i = i + n + 1
  end
  end_call()
  return out
end
"
    )
}

/// A script's `body` as a function of its `ARGV`, as every form holds it.
pub(crate) fn body_function(body: &str) -> String {
    format!("local function __op(ARGV)\n{body}\nend\n")
}

/// The script sent with `EVALSHA` for one operation: `head` (the prelude and helpers), the
/// [`runners`], the body, and `run_single`.
pub(crate) fn single_form(head: &str, body: &str) -> String {
    format!(
        "{head}{}{}return run_single(__op, ARGV)\n",
        runners(),
        body_function(body)
    )
}

/// The scripts with a batch form, numbered from 1 in this order in it (`BATCHED` in Lua):
/// the transitions every job goes through, and its log lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Batched {
    Submit,
    CommitAssignment,
    MarkRunning,
    Finish,
    AppendLogs,
}

impl Batched {
    /// Every one, in their order.
    pub const ALL: [Self; 5] = [
        Self::Submit,
        Self::CommitAssignment,
        Self::MarkRunning,
        Self::Finish,
        Self::AppendLogs,
    ];

    /// The script's name (as in `scripts.rs`), which errors name as the operation.
    pub fn name(self) -> &'static str {
        match self {
            Self::Submit => "submit",
            Self::CommitAssignment => "commit_assignment",
            Self::MarkRunning => "mark_running",
            Self::Finish => "finish",
            Self::AppendLogs => "append_logs",
        }
    }

    /// The one named `name`, if that script has a batch form.
    pub fn of(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|b| b.name() == name)
    }

    /// Its place in [`Self::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// Its number in the batch form (`BATCHED[n]`), from 1; below 8, as the batch's
    /// arguments give it with the operation's argument count.
    pub fn number(self) -> usize {
        self.index() + 1
    }
}

/// Lua that defines `BATCHED`, the table of the bodies of [`Batched`] by number, from the
/// body of each (`bodies`, in [`Batched::ALL`]'s order).
pub(crate) fn batched_table(bodies: &[&str]) -> String {
    let mut lua = String::from("local BATCHED = {}\n");
    for (n, body) in bodies.iter().enumerate() {
        lua.push_str(&format!(
            "do\n{}BATCHED[{}] = __op\nend\n",
            body_function(body),
            n + 1
        ));
    }
    lua
}

/// The batch form, sent with `EVALSHA` for several operations (of one script or several):
/// the same as [`single_form`] with the body of every script of [`Batched`] (`bodies`, in
/// that order), ending in `run_batch`.
pub(crate) fn batch_form(head: &str, bodies: &[&str]) -> String {
    format!(
        "{head}{}{}return run_batch(BATCHED, ARGV)\n",
        runners(),
        batched_table(bodies)
    )
}

/// A queued operation: its script, its arguments (after the prefix) and where its reply
/// goes.
struct Op {
    script: Batched,
    args: Vec<String>,
    reply: oneshot::Sender<Result<Value, StoreError>>,
}

/// Coalesces concurrent calls of the scripts of [`Batched`] (see the module docs). Dropping
/// it ends its task once the queue is drained.
pub(crate) struct Coalescer {
    queue: mpsc::UnboundedSender<Op>,
}

/// What the task of a [`Coalescer`] needs.
pub(crate) struct Worker {
    /// Where the calls go out (the shared connection), and the replicas to wait for.
    pub endpoint: Arc<Endpoint>,
    /// Whether a call waits for the replicas (`WAIT`) before its callers get their replies.
    pub waits: bool,
    /// The key prefix, the first argument of every call.
    pub prefix: String,
    /// The script sent for a lone operation of each of [`Batched::ALL`], in that order.
    pub singles: [Routine; Batched::ALL.len()],
    /// The [`batch_form`], sent for several.
    pub batch: Routine,
    /// Counts one per call sent.
    pub requests: Arc<AtomicU64>,
}

impl Coalescer {
    /// Starts the task of `worker`. Must be called inside a Tokio runtime.
    pub fn start(worker: Worker) -> Self {
        let (queue, rx) = mpsc::unbounded_channel();
        tokio::spawn(worker.run(rx));
        Self { queue }
    }

    /// Runs `script` with `args` (after the prefix), alone or in a batch, and returns its
    /// reply.
    pub async fn call(&self, script: Batched, args: Vec<String>) -> Result<Value, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Op {
                script,
                args,
                reply,
            })
            .map_err(|_| gone(script))?;
        answer.await.map_err(|_| gone(script))?
    }

    /// Runs `script` once per element of `calls`, queued together and in this order (so
    /// they share batch calls), and returns the replies in the same order.
    pub async fn call_many(
        &self,
        script: Batched,
        calls: Vec<Vec<String>>,
    ) -> Vec<Result<Value, StoreError>> {
        let answers: Vec<_> = calls
            .into_iter()
            .map(|args| {
                let (reply, answer) = oneshot::channel();
                // An operation the task can no longer take is dropped with its sender: its
                // answer then reads as gone.
                let _ = self.queue.send(Op {
                    script,
                    args,
                    reply,
                });
                answer
            })
            .collect();
        let mut replies = Vec::with_capacity(answers.len());
        for answer in answers {
            replies.push(answer.await.unwrap_or_else(|_| Err(gone(script))));
        }
        replies
    }
}

/// The error of an operation of `script` that the batching task can no longer take.
fn gone(script: Batched) -> StoreError {
    StoreError::Unavailable {
        operation: script.name(),
        source: "the store's batching task has stopped (its runtime shut down)".into(),
    }
}

impl Worker {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Op>) {
        let mut ops = Vec::with_capacity(MAX_OPS);
        // An operation taken off the queue that did not fit the previous batch.
        let mut carried: Option<Op> = None;
        loop {
            let first = match carried.take() {
                Some(op) => op,
                None => match rx.recv().await {
                    Some(op) => op,
                    None => return,
                },
            };
            carried = take_batch(first, &mut rx, &mut ops);
            self.send(&mut ops).await;
        }
    }

    /// Sends `ops` as one call and hands each its reply; leaves `ops` empty.
    async fn send(&mut self, ops: &mut Vec<Op>) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if ops.len() == 1 {
            let op = ops.pop().expect("one operation");
            let mut args = Vec::with_capacity(op.args.len() + 1);
            args.push(self.prefix.as_str());
            args.extend(op.args.iter().map(String::as_str));
            let mut conn = self.endpoint.conn();
            let single = &self.singles[op.script.index()];
            let reply = single.invoke(&mut conn, &args).await;
            let reply = self.endpoint.settle(&mut conn, reply, self.waits).await;
            let _ = op
                .reply
                .send(reply.map_err(|e| store_error(op.script.name(), e)));
            return;
        }
        let codes: Vec<String> = ops
            .iter()
            .map(|op| (op.args.len() * 8 + op.script.number()).to_string())
            .collect();
        let mut args = vec![self.prefix.as_str()];
        for (op, code) in ops.iter().zip(&codes) {
            args.push(code);
            args.extend(op.args.iter().map(String::as_str));
        }
        let mut conn = self.endpoint.conn();
        let reply: Result<Vec<Value>, RedisError> = self.batch.invoke(&mut conn, &args).await;
        let reply = self.endpoint.settle(&mut conn, reply, self.waits).await;
        match reply.map(|flat| unflatten(flat, ops.len())) {
            Ok(Ok(replies)) => {
                for (op, value) in ops.drain(..).zip(replies) {
                    let _ = op.reply.send(unwrap_one(op.script, value));
                }
            }
            Ok(Err(why)) => {
                for op in ops.drain(..) {
                    let _ = op.reply.send(Err(corrupt(op.script.name(), why.clone())));
                }
            }
            Err(e) => {
                let e = Arc::new(e);
                for op in ops.drain(..) {
                    let _ = op.reply.send(Err(fan_out(op.script.name(), &e)));
                }
            }
        }
    }
}

/// The reply of one operation of `script` out of a batch: an error its script raised
/// becomes the error the plain script would have failed with.
fn unwrap_one(script: Batched, value: Value) -> Result<Value, StoreError> {
    if let Value::Array(items) = &value {
        if let [Value::BulkString(status), message] = items.as_slice() {
            if status == SCRIPT_ERROR.as_bytes() {
                let message: String = redis::from_redis_value_ref(message).unwrap_or_default();
                return Err(corrupt(
                    format!("reply to {}", script.name()),
                    format!("script error: {message}"),
                ));
            }
        }
    }
    Ok(value)
}

/// The replies of a batch of `ops` operations out of `run_batch`'s flat answer: for each,
/// its item count and then its items, made one array each.
fn unflatten(flat: Vec<Value>, ops: usize) -> Result<Vec<Value>, String> {
    let mut replies = Vec::with_capacity(ops);
    let mut items = flat.into_iter();
    while let Some(count) = items.next() {
        let n = match count {
            Value::Int(n) => usize::try_from(n).map_err(|_| format!("an item count of {n}"))?,
            other => return Err(format!("an item count of {other:?}")),
        };
        let reply: Vec<Value> = items.by_ref().take(n).collect();
        if reply.len() < n {
            return Err(format!("{} items where {n} were counted", reply.len()));
        }
        replies.push(Value::Array(reply));
    }
    if replies.len() != ops {
        return Err(format!("{} replies to {ops} operations", replies.len()));
    }
    Ok(replies)
}

/// Fills `ops` with `first` and what else is queued now, up to [`MAX_OPS`] operations and
/// [`MAX_ARGS`] arguments; returns an operation taken that did not fit (it starts the next
/// batch).
fn take_batch(first: Op, rx: &mut mpsc::UnboundedReceiver<Op>, ops: &mut Vec<Op>) -> Option<Op> {
    let mut args = first.args.len();
    ops.push(first);
    while ops.len() < MAX_OPS {
        let Ok(op) = rx.try_recv() else {
            return None;
        };
        if args + op.args.len() > MAX_ARGS {
            return Some(op);
        }
        args += op.args.len();
        ops.push(op);
    }
    None
}

/// The error of a failed batch call, for each of its operations: `Unavailable` when Redis
/// could not be reached, as for a lone call. Every operation's error has the one Redis
/// error as its source (shared: a `RedisError` cannot be cloned).
fn fan_out(operation: &'static str, err: &Arc<RedisError>) -> StoreError {
    let source = Box::new(SharedError(err.clone()));
    if is_unavailable(err) {
        StoreError::Unavailable { operation, source }
    } else {
        StoreError::Corrupt {
            what: format!("reply to {operation}"),
            source,
        }
    }
}

/// One error shared by the operations of a batch; reads as the error itself.
#[derive(Debug)]
struct SharedError(Arc<RedisError>);

impl std::fmt::Display for SharedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for SharedError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn a_flat_answer_becomes_one_reply_per_operation() {
        let nested = Value::Array(vec![text("a"), text("b")]);
        let flat = vec![
            Value::Int(1),
            text("ok"),
            Value::Int(0),
            Value::Int(3),
            text("ok"),
            Value::Nil,
            nested.clone(),
        ];
        assert_eq!(
            unflatten(flat.clone(), 3).unwrap(),
            [
                Value::Array(vec![text("ok")]),
                Value::Array(vec![]),
                Value::Array(vec![text("ok"), Value::Nil, nested]),
            ]
        );
        // Too few replies, a count past the end, a count that is not one.
        assert!(unflatten(flat.clone(), 4).is_err());
        assert!(unflatten(flat[..5].to_vec(), 3).is_err());
        assert!(unflatten(vec![text("ok")], 1).is_err());
        assert!(unflatten(vec![Value::Int(-1)], 1).is_err());
    }

    fn op(args: usize) -> Op {
        let (reply, _) = oneshot::channel();
        Op {
            script: Batched::Finish,
            args: vec![String::new(); args],
            reply,
        }
    }

    /// The batches `take_batch` cuts from a queue of operations of these sizes.
    fn batches(sizes: &[usize]) -> Vec<Vec<usize>> {
        let (tx, mut rx) = mpsc::unbounded_channel();
        for &n in sizes {
            tx.send(op(n)).unwrap();
        }
        let mut out = Vec::new();
        let mut carried = None;
        loop {
            let first = match carried.take() {
                Some(op) => op,
                None => match rx.try_recv() {
                    Ok(op) => op,
                    Err(_) => return out,
                },
            };
            let mut ops = Vec::new();
            carried = take_batch(first, &mut rx, &mut ops);
            out.push(ops.iter().map(|o| o.args.len()).collect());
        }
    }

    #[test]
    fn a_batch_holds_at_most_max_ops_operations_in_queue_order() {
        let cut = batches(&vec![3; 300]);
        let lens: Vec<usize> = cut.iter().map(Vec::len).collect();
        assert_eq!(lens, vec![MAX_OPS, MAX_OPS, 300 - 2 * MAX_OPS]);
    }

    #[test]
    fn large_operations_split_batches_and_an_oversized_one_goes_alone() {
        let big = MAX_ARGS / 2 + 1;
        assert_eq!(
            batches(&[big, big, 10, MAX_ARGS * 2, 5]),
            vec![vec![big], vec![big, 10], vec![MAX_ARGS * 2], vec![5]]
        );
    }

    #[test]
    fn a_failed_call_gives_every_operation_the_typed_error_with_the_cause() {
        let down = Arc::new(RedisError::from(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "refused",
        )));
        for _ in 0..2 {
            match fan_out("finish", &down) {
                StoreError::Unavailable { operation, source } => {
                    assert_eq!(operation, "finish");
                    assert_eq!(source.to_string(), down.to_string());
                }
                other => panic!("expected Unavailable, got {other:?}"),
            }
        }
        let refused = Arc::new(RedisError::from((
            redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError),
            "refused",
            "bad reply".to_owned(),
        )));
        match fan_out("submit", &refused) {
            StoreError::Corrupt { what, source } => {
                assert_eq!(what, "reply to submit");
                assert_eq!(source.to_string(), refused.to_string());
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    #[test]
    fn each_script_with_a_batch_form_has_its_number_and_name() {
        for (i, script) in Batched::ALL.into_iter().enumerate() {
            assert_eq!(script.index(), i);
            assert_eq!(script.number(), i + 1);
            assert!(
                script.number() < 8,
                "a number below 8, in the low bits of its code"
            );
            assert_eq!(Batched::of(script.name()), Some(script));
        }
        assert_eq!(Batched::of("purge"), None);
    }

    #[test]
    fn the_batch_form_runs_the_body_per_operation_and_wakes_and_tells_once() {
        let script = batch_form(
            "local WOKEN = false\n",
            &["return { ARGV[2] }", "return { 'second' }"],
        );
        // Each body a function of its ARGV, numbered in the order given.
        assert!(script.contains(
            "do\nlocal function __op(ARGV)\nreturn { ARGV[2] }\nend\nBATCHED[1] = __op\nend\n"
        ));
        assert!(script.contains(
            "do\nlocal function __op(ARGV)\nreturn { 'second' }\nend\nBATCHED[2] = __op\nend\n"
        ));
        assert!(script.ends_with("return run_batch(BATCHED, ARGV)\n"));
        // The body runs per operation inside the loop; the end of the call (the one
        // wake-up and message of changes) after it.
        let batch = &script[script.find("local function run_batch").unwrap()..];
        let (inside, after) = batch.split_at(batch.find("  end\n  end_call()").unwrap());
        assert!(inside.contains("local op, n = ops[script], (code - script) / 8"));
        assert!(inside.contains("pcall(op, a)"));
        assert!(!inside.contains("end_call()"));
        assert_eq!(after.matches("end_call()").count(), 1);
        let end_call = &script[script.find("local function end_call").unwrap()..];
        let end_call = &end_call[..end_call.find("\nend\n").unwrap()];
        assert_eq!(end_call.matches("PUBLISH', CH_WAKE").count(), 1);
        assert_eq!(end_call.matches("PUBLISH', CH_CHANGES").count(), 1);
    }
}
