//! `airlock-init` as PID 1 of real containers on the host daemon: the static binary from
//! `airlock/init:dev` (`make images`) bind-mounted read-only at `/.airlock/init` in
//! `airlock/testbox:dev` (static busybox), frames written on the container's stdin (`-i`).
//!
//! - exit codes pass through (3 → 3, self-SIGKILL → 137) and SIGTERM reaches a trapping child;
//! - orphaned grandchildren are reaped: none is left as a zombie in `/proc`;
//! - bad frames end with 64 and one typed `airlock-init: {"error":...}` line; a missing program
//!   with 127; EOF before a frame and the idle timeout with 75;
//! - the workload cannot read fd 0: bytes after the frame, and later writes, reach nobody;
//! - env, workdir, seed files and the CA file arrive as the frame says;
//! - a fork bomb under a pids limit is contained and cleaned up; a memory hog ends `OOMKilled`.
//!
//! Containers are named `in-init-<test>-<pid>` and removed on drop, pass or fail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const INIT_IMAGE: &str = "airlock/init:dev";
const TESTBOX: &str = "airlock/testbox:dev";
const DEADLINE: Duration = Duration::from_secs(30);

fn docker(args: &[&str]) -> std::process::Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("docker CLI")
}

/// The static init binary, copied once out of `airlock/init:dev`.
fn init_binary() -> &'static PathBuf {
    static BINARY: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &BINARY
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let name = format!("in-init-extract-{}", std::process::id());
            let created = docker(&["create", "--name", &name, INIT_IMAGE, "/init"]);
            assert!(
                created.status.success(),
                "{INIT_IMAGE} is missing (make images): {}",
                String::from_utf8_lossy(&created.stderr)
            );
            let path = dir.path().join("init");
            let copied = docker(&["cp", &format!("{name}:/init"), path.to_str().unwrap()]);
            docker(&["rm", "-f", &name]);
            assert!(
                copied.status.success(),
                "{}",
                String::from_utf8_lossy(&copied.stderr)
            );
            (dir, path)
        })
        .1
}

fn frame(body: &Value) -> Vec<u8> {
    raw_frame(&serde_json::to_vec(body).unwrap())
}

fn raw_frame(body: &[u8]) -> Vec<u8> {
    let mut out = b"ALK1".to_vec();
    out.extend_from_slice(&u32::try_from(body.len()).unwrap().to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn body(argv: &[&str]) -> Value {
    json!({"v": 1, "sandbox_id": "sbx_test", "argv": argv, "env": {}, "workdir": "/"})
}

/// One `docker run -i` of init in the testbox; removed on drop.
struct Box {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: Receiver<String>,
}

impl Box {
    fn start(test: &str, extra: &[&str]) -> Self {
        let name = format!("in-init-{test}-{}", std::process::id());
        docker(&["rm", "-f", &name]);
        let mount = format!("{}:/.airlock/init:ro", init_binary().display());
        let mut args = vec!["run", "-i", "--name", &name, "-v", &mount];
        args.extend_from_slice(&["--entrypoint", "/.airlock/init", "--network", "none"]);
        args.extend_from_slice(extra);
        args.push(TESTBOX);
        let mut child = Command::new("docker")
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = pump(child.stdout.take().unwrap());
        let stderr = pump(child.stderr.take().unwrap());
        let stdin = child.stdin.take();
        Self {
            name,
            child,
            stdin,
            lines,
            stderr,
        }
    }

    fn write(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(bytes).unwrap();
        stdin.flush().unwrap();
    }

    fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits for a stdout line equal to `want`.
    fn expect_line(&self, want: &str) {
        let deadline = Instant::now() + DEADLINE;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) if line == want => return,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        panic!("{}: no line {want:?} on stdout", self.name);
    }

    /// Waits for the container to exit; returns its status, stdout and stderr.
    fn finish(mut self) -> (i32, Vec<String>, Vec<String>) {
        let deadline = Instant::now() + DEADLINE;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit in {DEADLINE:?}",
                self.name
            );
            // `docker run` has no exit notification to block on; a short poll interval.
            std::thread::sleep(Duration::from_millis(20));
        };
        let out = self.lines.iter().collect();
        let err = self.stderr.iter().collect();
        (status.code().unwrap_or(-1), out, err)
    }
}

impl Drop for Box {
    fn drop(&mut self) {
        let _ = self.child.kill();
        docker(&["rm", "-f", &self.name]);
    }
}

fn pump(stream: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The one `airlock-init:` line's error code.
fn init_error(stderr: &[String]) -> String {
    let lines: Vec<&String> = stderr
        .iter()
        .filter(|l| l.starts_with("airlock-init: "))
        .collect();
    assert_eq!(lines.len(), 1, "{stderr:?}");
    let json: Value = serde_json::from_str(&lines[0]["airlock-init: ".len()..]).unwrap();
    assert!(json["message"].is_string(), "{json}");
    json["error"].as_str().unwrap().to_owned()
}

/// Runs one frame to completion and returns (status, stdout, stderr).
fn run_frame(test: &str, extra: &[&str], bytes: &[u8]) -> (i32, Vec<String>, Vec<String>) {
    let mut b = Box::start(test, extra);
    b.write(bytes);
    b.finish()
}

#[test]
fn exit_codes_pass_through() {
    let (status, _, stderr) = run_frame("exit3", &[], &frame(&body(&["sh", "-c", "exit 3"])));
    assert_eq!(status, 3, "{stderr:?}");
    let kill = frame(&body(&["sh", "-c", "kill -9 $$"]));
    let (status, _, stderr) = run_frame("kill9", &[], &kill);
    assert_eq!(status, 137, "{stderr:?}");
}

#[test]
fn sigterm_reaches_a_trapping_child_and_its_code_comes_back() {
    let script = "trap 'echo got-term; exit 42' TERM; echo ready; while :; do sleep 1 & wait; done";
    let mut b = Box::start("term", &[]);
    b.write(&frame(&body(&["sh", "-c", script])));
    b.expect_line("ready");
    let killed = docker(&["kill", "-s", "TERM", &b.name]);
    assert!(killed.status.success(), "{killed:?}");
    let (status, out, err) = b.finish();
    assert_eq!(status, 42, "{out:?} {err:?}");
    assert!(out.iter().any(|l| l == "got-term"), "{out:?}");
}

#[test]
fn orphaned_grandchildren_are_reaped() {
    // Five grandchildren orphaned at once (their parent subshell exits): init adopts and must
    // reap them. The workload polls /proc until no `sleep` is left; an unreaped one stays there
    // as a zombie, so the loop would run out instead.
    let script = r#"
        for i in 1 2 3 4 5; do (sleep 0.3 &); done
        i=0
        while [ $i -lt 200 ]; do
            n=0; z=0
            for s in /proc/[0-9]*/stat; do
                read -r line < "$s" 2>/dev/null || continue
                case "$line" in *") Z "*) z=$((z+1));; esac
                case "$line" in *"(sleep)"*) n=$((n+1));; esac
            done
            if [ $n -eq 0 ]; then echo "zombies=$z"; exit 0; fi
            i=$((i+1)); sleep 0.05
        done
        echo "still there: $n sleep, $z zombies"; exit 1"#;
    let (status, out, err) = run_frame("orphans", &[], &frame(&body(&["sh", "-c", script])));
    assert_eq!(
        (status, out.as_slice()),
        (0, ["zombies=0".to_owned()].as_slice()),
        "{err:?}"
    );
}

#[test]
fn bad_frames_end_with_typed_reasons() {
    let mut oversize = b"ALK1".to_vec();
    oversize.extend_from_slice(&((1u32 << 20) + 1).to_be_bytes());
    let mut unknown = body(&["true"]);
    unknown["shell"] = json!(true);
    let mut nul = body(&["true"]);
    nul["env"] = json!({"A": "x\u{0}y"});
    let mut relative = body(&["true"]);
    relative["workdir"] = json!("tmp");
    let mut missing_dir = body(&["true"]);
    missing_dir["workdir"] = json!("/nowhere");
    let cases: [(&str, Vec<u8>, i32, &str); 7] = [
        ("oversize", oversize, 64, "frame_too_large"),
        ("magic", b"ALK2\0\0\0\x02{}".to_vec(), 64, "bad_magic"),
        ("unknown", frame(&unknown), 64, "unknown_field"),
        ("nul", frame(&nul), 64, "env_nul"),
        ("relative", frame(&relative), 64, "workdir_not_absolute"),
        ("nodir", frame(&missing_dir), 64, "workdir_missing"),
        (
            "missing",
            frame(&body(&["no-such-program"])),
            127,
            "exec_not_found",
        ),
    ];
    let handles: Vec<_> = cases
        .into_iter()
        .map(|(test, bytes, want_status, want_code)| {
            std::thread::spawn(move || {
                let (status, _, stderr) = run_frame(&format!("bad-{test}"), &[], &bytes);
                assert_eq!(status, want_status, "{test}: {stderr:?}");
                assert_eq!(init_error(&stderr), want_code, "{test}");
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    let (status, _, stderr) = run_frame("noexec", &[], &frame(&body(&["/etc/passwd"])));
    assert_eq!((status, init_error(&stderr).as_str()), (126, "exec_denied"));
}

#[test]
fn no_frame_ends_with_75() {
    let mut eof = Box::start("eof", &[]);
    eof.write(b"ALK1\0\0");
    eof.close_stdin();
    let (status, _, stderr) = eof.finish();
    assert_eq!(
        (status, init_error(&stderr).as_str()),
        (75, "eof_before_frame")
    );

    let started = Instant::now();
    let idle = Box::start("idle", &["-e", "AIRLOCK_POOL_MAX_IDLE=1"]);
    let (status, _, stderr) = idle.finish();
    assert_eq!((status, init_error(&stderr).as_str()), (75, "idle_timeout"));
    assert!(started.elapsed() >= Duration::from_secs(1));
}

#[test]
fn the_workload_cannot_read_the_channel() {
    let mut b = Box::start("stdin", &[]);
    let script = "cat; echo read-done; read -r line; echo \"line=[$line]\"; sleep 1; cat; echo end";
    let mut bytes = frame(&body(&["sh", "-c", script]));
    bytes.extend_from_slice(b"AFTER-THE-FRAME\n");
    b.write(&bytes);
    b.expect_line("read-done");
    // A later write (a second attach's) reaches no reader either.
    b.write(b"LATER\n");
    let (status, out, err) = b.finish();
    assert_eq!(status, 0, "{err:?}");
    assert_eq!(out, ["line=[]", "end"], "{err:?}");
}

#[test]
fn env_workdir_seed_and_ca_files_arrive() {
    let pem = "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n";
    let script = "echo \"$FOO|$HTTPS_PROXY|${AIRLOCK_INIT_WRITABLE-unset}|$(pwd)\"; \
                  cat /tmp/seed/a.txt; stat -c %a /tmp/seed/a.txt; cat /tmp/tls/ca.pem | head -1; \
                  tail -1 /tmp/tls/bundle.pem; stat -c %a /tmp/tls /tmp/tls/ca.pem";
    let frame_body = json!({
        "v": 1,
        "sandbox_id": "sbx_seed",
        "argv": ["sh", "-c", script],
        "env": {"FOO": "from-frame"},
        "workdir": "/tmp/seed",
        "ca_pem": pem,
        "files": [{"path": "/tmp/seed/a.txt", "content": "seeded\n", "mode": 0o600}],
    });
    let extra = [
        "--read-only",
        "--tmpfs",
        "/tmp:mode=1777",
        "--user",
        "65534:65534",
        "-e",
        "AIRLOCK_INIT_WRITABLE=/tmp",
        "-e",
        "AIRLOCK_INIT_CA_FILE=/tmp/tls/ca.pem",
        "-e",
        "HTTPS_PROXY=http://proxy:3128",
        "-e",
        "FOO=from-image",
    ];
    let (status, out, err) = run_frame("seed", &extra, &frame(&frame_body));
    assert_eq!(status, 0, "{out:?} {err:?}");
    assert_eq!(
        out,
        [
            "from-frame|http://proxy:3128|unset|/tmp/seed",
            "seeded",
            "600",
            "-----BEGIN CERTIFICATE-----",
            "-----END CERTIFICATE-----",
            "555",
            "444"
        ]
    );
    // A seed outside the writable roots is refused before anything runs.
    let mut outside = frame_body.clone();
    outside["files"] = json!([{"path": "/etc/x", "content": ""}]);
    let (status, _, stderr) = run_frame("seed-out", &extra, &frame(&outside));
    assert_eq!(
        (status, init_error(&stderr).as_str()),
        (64, "file_not_writable")
    );
}

/// A fork bomb under a pids limit is contained: forks fail, the main child still finishes,
/// and init then ends the whole process group and exits with the child's code.
#[test]
fn a_fork_bomb_is_contained_and_cleaned_up() {
    let script = "bomb() { bomb | bomb & }; bomb; echo alive; exit 5";
    let (status, out, err) = run_frame(
        "forkbomb",
        &["--pids-limit", "32"],
        &frame(&body(&["sh", "-c", script])),
    );
    assert_eq!(status, 5, "{out:?} {err:?}");
    assert!(out.iter().any(|l| l == "alive"), "{out:?}");
}

/// A workload that outgrows its memory limit is killed by the kernel's OOM killer: init
/// reports 137 and Docker still shows `OOMKilled`.
#[test]
fn a_memory_hog_ends_oom_killed() {
    let script = "x=$(head -c 400000000 /dev/zero | tr '\\000' x); echo survived";
    let mut b = Box::start("oom", &["--memory", "32m", "--memory-swap", "32m"]);
    b.write(&frame(&body(&["sh", "-c", script])));
    let name = b.name.clone();
    let deadline = Instant::now() + DEADLINE;
    let state = loop {
        let out = docker(&[
            "inspect",
            "-f",
            "{{.State.Running}} {{.State.OOMKilled}} {{.State.ExitCode}}",
            &name,
        ]);
        let state = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if state.starts_with("false") {
            break state;
        }
        assert!(Instant::now() < deadline, "{name} still running: {state}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let (status, out, _) = b.finish();
    assert!(!out.iter().any(|l| l == "survived"), "{out:?}");
    assert_eq!(state, "false true 137", "OOMKilled is shown");
    assert_eq!(status, 137);
}
