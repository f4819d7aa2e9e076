//! [`FakeBehaviour`]: what a fake container does, and the small command language that picks it.

use std::time::Duration;

/// The most lines `lines=N` generates (larger values are clamped), so that a typo cannot
/// exhaust memory.
pub const MAX_FAKE_LINES: usize = 100_000;

/// What one fake container does.
///
/// The default is a container that exits at once with code 0 and prints nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FakeBehaviour {
    /// How long it runs before exiting (ignored when `hang`).
    pub run_for: Duration,
    /// Its exit code (137 when `oom`).
    pub exit_code: i64,
    /// The stdout lines it prints, all at once when it starts.
    pub lines: Vec<String>,
    /// It is OOM-killed when it exits (exit code 137, `oom_killed`).
    pub oom: bool,
    /// Its image cannot be had: `start` fails with `ImageUnavailable` (the fake does not know
    /// the job at `ensure_image`; see [`FakeRuntime::with_unavailable_image`] for a pull that
    /// fails at `ensure_image`).
    ///
    /// [`FakeRuntime::with_unavailable_image`]: super::FakeRuntime::with_unavailable_image
    pub pull_fails: bool,
    /// `start` fails with `StartFailed` (no container is left behind).
    pub start_fails: bool,
    /// It runs until stopped.
    pub hang: bool,
    /// It exits with 143 as soon as it receives SIGTERM; otherwise `stop` kills it with 137
    /// after the grace period (the behaviour of a process that ignores SIGTERM; under the
    /// Docker runtime's init most jobs behave like `term`).
    pub exits_on_term: bool,
}

impl FakeBehaviour {
    /// The behaviour a job's command asks for.
    ///
    /// A command whose first word is `fake` is read as directives, in any order:
    ///
    /// | directive      | effect                                                       |
    /// |----------------|--------------------------------------------------------------|
    /// | `run=<d>`      | run for `<d>`: `50ms`, `2s`, `1m`, or bare milliseconds `50` |
    /// | `exit=<k>`     | exit with code `k`                                           |
    /// | `print=<text>` | print the line `text` (repeatable, in order)                 |
    /// | `lines=<n>`    | print `line 1` .. `line n` (at most [`MAX_FAKE_LINES`])      |
    /// | `oom`          | get OOM-killed (exit code 137)                               |
    /// | `pull-fail`    | the image cannot be had                                      |
    /// | `start-fail`   | the container fails to start                                 |
    /// | `hang`         | run until stopped                                            |
    /// | `term`         | exit 143 at once on SIGTERM instead of waiting to be killed  |
    ///
    /// A directive it cannot read becomes a printed line `fake: ignored directive "<word>"`,
    /// so mistakes show in the job's log instead of failing silently.
    ///
    /// Any other command exits at once with code 0 and prints its arguments joined by
    /// spaces, like `echo` (`["echo", "hello"]` prints `hello`; a command without arguments
    /// prints nothing).
    pub fn from_command(command: &[String]) -> FakeBehaviour {
        let mut behaviour = FakeBehaviour::default();
        match command.split_first() {
            Some((first, directives)) if first == "fake" => {
                for directive in directives {
                    behaviour.apply(directive);
                }
            }
            Some((_, args)) if !args.is_empty() => behaviour.lines.push(args.join(" ")),
            _ => {}
        }
        if behaviour.oom {
            behaviour.exit_code = 137;
        }
        behaviour
    }

    /// Applies one directive of the command language.
    fn apply(&mut self, directive: &str) {
        let (word, value) = match directive.split_once('=') {
            Some((w, v)) => (w, Some(v)),
            None => (directive, None),
        };
        let understood = match (word, value) {
            ("run", Some(v)) => parse_duration(v).map(|d| self.run_for = d).is_some(),
            ("exit", Some(v)) => v.parse().map(|code| self.exit_code = code).is_ok(),
            ("print", Some(v)) => {
                self.lines.push(v.to_owned());
                true
            }
            ("lines", Some(v)) => v
                .parse::<usize>()
                .map(|n| {
                    let room = MAX_FAKE_LINES.saturating_sub(self.lines.len());
                    self.lines
                        .extend((1..=n.min(room)).map(|i| format!("line {i}")));
                })
                .is_ok(),
            ("oom", None) => {
                self.oom = true;
                true
            }
            ("pull-fail", None) => {
                self.pull_fails = true;
                true
            }
            ("start-fail", None) => {
                self.start_fails = true;
                true
            }
            ("hang", None) => {
                self.hang = true;
                true
            }
            ("term", None) => {
                self.exits_on_term = true;
                true
            }
            _ => false,
        };
        if !understood {
            let shown: String = directive.chars().take(64).collect();
            self.lines
                .push(format!("fake: ignored directive {shown:?}"));
        }
    }
}

/// `50ms`, `2s`, `1m` or bare milliseconds.
fn parse_duration(text: &str) -> Option<Duration> {
    let (digits, unit_ms) = if let Some(n) = text.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1_000)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60_000)
    } else {
        (text, 1)
    };
    let n: u64 = digits.parse().ok()?;
    Some(Duration::from_millis(n.checked_mul(unit_ms)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| (*w).to_owned()).collect()
    }

    #[test]
    fn reads_every_directive() {
        let b = FakeBehaviour::from_command(&cmd(&[
            "fake",
            "run=50ms",
            "exit=3",
            "print=hello=world",
            "lines=2",
            "pull-fail",
            "start-fail",
            "hang",
            "term",
        ]));
        assert_eq!(b.run_for, Duration::from_millis(50));
        assert_eq!(b.exit_code, 3);
        assert_eq!(b.lines, ["hello=world", "line 1", "line 2"]);
        assert!(b.pull_fails && b.start_fails && b.hang && b.exits_on_term && !b.oom);
    }

    #[test]
    fn oom_exits_137_and_durations_take_units() {
        let b = FakeBehaviour::from_command(&cmd(&["fake", "oom", "run=2s"]));
        assert_eq!((b.oom, b.exit_code), (true, 137));
        assert_eq!(b.run_for, Duration::from_secs(2));
        assert_eq!(parse_duration("1m"), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("40"), Some(Duration::from_millis(40)));
        assert_eq!(parse_duration("x"), None);
        assert_eq!(parse_duration("99999999999999999999m"), None);
    }

    #[test]
    fn other_commands_echo_their_arguments() {
        let b = FakeBehaviour::from_command(&cmd(&["echo", "hello", "there"]));
        assert_eq!(b.lines, ["hello there"]);
        assert_eq!((b.exit_code, b.run_for, b.hang), (0, Duration::ZERO, false));
        assert!(FakeBehaviour::from_command(&cmd(&["true"]))
            .lines
            .is_empty());
        assert_eq!(FakeBehaviour::from_command(&[]), FakeBehaviour::default());
    }

    #[test]
    fn bad_directives_are_shown_not_fatal() {
        let b = FakeBehaviour::from_command(&cmd(&["fake", "run=soon", "exit=x", "dance"]));
        assert_eq!(b.lines.len(), 3);
        assert!(b.lines[0].contains("run=soon"), "{:?}", b.lines);
        assert_eq!(b.run_for, Duration::ZERO);
    }

    #[test]
    fn line_count_is_clamped() {
        let b = FakeBehaviour::from_command(&cmd(&["fake", "lines=99999999", "lines=5"]));
        assert_eq!(b.lines.len(), MAX_FAKE_LINES);
    }
}
