//! Lane scripts: a small line-oriented text format that plays a lane for the virtual
//! board (format in `docs/hardware.md`, "Virtual board"), and the `aeogate board` entry
//! point.
//!
//! ```text
//! # a truck with two tags and an e-seal stops for four seconds
//! arrive tags=3074257BF7194E4000001A85,3400AB12CD34EF5600001234 eseal=0042-0001E240:SEALED:OK
//! wait 4s
//! leave
//! fault garbage 64
//! fault drop-frames 3
//! fault reader-silent uhf 5s
//! fault unplug 2s
//! fault restart 200ms uptime=10m
//! ```
//!
//! A script is parsed whole before anything runs, so a typo on line 9 is reported before
//! line 1 moves a truck.

use std::io::{self, BufRead, Write};
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use protocol::link::{BatteryLevel, SealRead, SealStatus};
use protocol::seal::ESealId;

use super::sim::Rng;
use super::{Fault, Truck, VirtualBoard, VirtualBoardConfig};

/// One line of a script that does something.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A truck drives on.
    Arrive(Truck),
    /// It drives off.
    Leave,
    /// Let time pass.
    Wait(Duration),
    /// Break something.
    Fault(Fault),
}

/// A parsed script: steps with the line each came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Script {
    /// `(line number from 1, step)`.
    pub steps: Vec<(usize, Step)>,
}

/// A line of a script that cannot be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("script line {line}: {message}")]
pub struct ScriptError {
    /// Line number, from 1.
    pub line: usize,
    /// What is wrong with it.
    pub message: String,
}

/// Longest `wait` or fault duration accepted: a script is a demo or a test, not a service.
const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);
/// Most noise bytes one `fault garbage` writes.
const MAX_GARBAGE: usize = 4096;

/// Parse a whole script. `seed` makes the bytes of `fault garbage N` repeatable.
pub fn parse_script(text: &str, seed: u64) -> Result<Script, ScriptError> {
    let mut rng = Rng::new(seed);
    let mut steps = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        if let Some(step) =
            parse_line(raw, &mut rng).map_err(|message| ScriptError { line, message })?
        {
            steps.push((line, step));
        }
    }
    Ok(Script { steps })
}

/// Parse one line; `Ok(None)` for blank lines and comments.
fn parse_line(raw: &str, rng: &mut Rng) -> Result<Option<Step>, String> {
    let text = raw.split_once('#').map_or(raw, |(before, _)| before);
    let mut words = text.split_whitespace();
    let Some(verb) = words.next() else {
        return Ok(None);
    };
    let args: Vec<&str> = words.collect();
    let step = match verb {
        "arrive" => Step::Arrive(parse_truck(&args)?),
        "leave" => {
            no_more(&args, "leave")?;
            Step::Leave
        }
        "wait" => match args.as_slice() {
            [d] => Step::Wait(duration(d)?),
            _ => return Err("expected `wait DURATION`, e.g. `wait 4s`".into()),
        },
        "fault" => Step::Fault(parse_fault(&args, rng)?),
        other => {
            return Err(format!(
                "unknown command {other:?}; expected arrive, leave, wait or fault"
            ));
        }
    };
    Ok(Some(step))
}

fn no_more(args: &[&str], verb: &str) -> Result<(), String> {
    match args.first() {
        None => Ok(()),
        Some(extra) => Err(format!("`{verb}` takes no arguments, found {extra:?}")),
    }
}

fn duration(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text)
        .map_err(|e| format!("bad duration {text:?} ({e}); write e.g. 500ms, 4s, 1m"))?;
    if d > MAX_DURATION {
        return Err(format!("duration {text:?} is longer than 24 h"));
    }
    Ok(d)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn parse_truck(args: &[&str]) -> Result<Truck, String> {
    let mut truck = Truck::default();
    for arg in args {
        let (key, value) = arg
            .split_once('=')
            .ok_or_else(|| format!("expected key=value after `arrive`, found {arg:?}"))?;
        match key {
            "tags" => {
                for hex in value.split(',').filter(|s| !s.is_empty()) {
                    truck.tags.push(parse_epc(hex)?);
                }
            }
            "eseal" | "eseals" => {
                for seal in value.split(',').filter(|s| !s.is_empty()) {
                    truck.eseals.push(parse_eseal(seal)?);
                }
            }
            "dwell" => truck.dwell = duration(value)?,
            other => {
                return Err(format!(
                    "unknown `arrive` key {other:?}; expected tags, eseal or dwell"
                ));
            }
        }
    }
    truck.check().map_err(|e| e.to_string())?;
    Ok(truck)
}

fn parse_epc(hex: &str) -> Result<Vec<u8>, String> {
    let digits = hex.strip_prefix("0x").unwrap_or(hex);
    if !digits.len().is_multiple_of(2) || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "tag {hex:?} is not an even number of hex digits (an EPC is whole 16-bit words)"
        ));
    }
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).map_err(|e| format!("tag {hex:?}: {e}")))
        .collect()
}

/// The e-seal statuses a script names, the default first.
const SEAL_STATUSES: &[(&str, SealStatus)] = &[
    ("SEALED", SealStatus::Sealed),
    ("OPENED", SealStatus::Opened),
    ("TAMPERED", SealStatus::Tampered),
];

/// The e-seal battery levels a script names, the default first.
const BATTERY_LEVELS: &[(&str, BatteryLevel)] = &[
    ("OK", BatteryLevel::Ok),
    ("LOW", BatteryLevel::Low),
    ("CRITICAL", BatteryLevel::Critical),
];

/// `MMMM-TTTTTTTT[:STATUS[:BATTERY]]`, status SEALED / OPENED / TAMPERED (default
/// SEALED), battery OK / LOW / CRITICAL (default OK).
fn parse_eseal(text: &str) -> Result<SealRead, String> {
    let mut parts = text.split(':');
    let id = parts.next().unwrap_or_default();
    let id = ESealId::parse(id)
        .map_err(|e| format!("e-seal id {id:?}: {e} (write MMMM-TTTTTTTT in hex)"))?;
    let status = keyword(parts.next(), "e-seal status", SEAL_STATUSES)?;
    let battery = keyword(parts.next(), "e-seal battery", BATTERY_LEVELS)?;
    if let Some(extra) = parts.next() {
        return Err(format!("unexpected {extra:?} after the e-seal battery"));
    }
    Ok(SealRead {
        manufacturer: id.manufacturer(),
        tag_id: id.tag_id(),
        status,
        battery,
        sealed_at: None,
        opened_at: None,
    })
}

/// The value `words` gives `word` (any case), the first one's when `word` is absent; the
/// error names `what` and the words expected.
fn keyword<T: Copy>(word: Option<&str>, what: &str, words: &[(&str, T)]) -> Result<T, String> {
    let Some(word) = word.map(str::to_ascii_uppercase) else {
        return Ok(words[0].1);
    };
    if let Some((_, value)) = words.iter().find(|(w, _)| *w == word) {
        return Ok(*value);
    }
    let names: Vec<&str> = words.iter().map(|(w, _)| *w).collect();
    let (last, rest) = names.split_last().unwrap_or((&"", &[]));
    Err(format!(
        "{what} {word:?}; expected {} or {last}",
        rest.join(", ")
    ))
}

fn parse_fault(args: &[&str], rng: &mut Rng) -> Result<Fault, String> {
    match args {
        ["garbage", n] => {
            let n: usize = n
                .parse()
                .map_err(|_| format!("garbage byte count {n:?} is not a number"))?;
            if n > MAX_GARBAGE {
                return Err(format!("at most {MAX_GARBAGE} garbage bytes, not {n}"));
            }
            Ok(Fault::Garbage(rng.bytes(n)))
        }
        ["drop-frames", n] => n
            .parse()
            .map(Fault::DropFrames)
            .map_err(|_| format!("frame count {n:?} is not a number")),
        ["reader-silent", which, d] => {
            let uhf = match *which {
                "uhf" => true,
                "eseal" => false,
                other => return Err(format!("reader {other:?}; expected uhf or eseal")),
            };
            Ok(Fault::ReaderSilent {
                uhf,
                for_ms: millis(duration(d)?),
            })
        }
        ["unplug", d] => Ok(Fault::Unplug {
            for_ms: millis(duration(d)?),
        }),
        ["restart", d, rest @ ..] => {
            let uptime_ms = match rest {
                [] => 0,
                [u] => {
                    let u = u
                        .strip_prefix("uptime=")
                        .ok_or_else(|| format!("{u:?}; expected uptime=DURATION"))?;
                    u32::try_from(duration(u)?.as_millis())
                        .map_err(|_| format!("uptime {u} does not fit the board's u32 clock"))?
                }
                _ => return Err("expected `fault restart DURATION [uptime=DURATION]`".into()),
            };
            Ok(Fault::Restart {
                down_ms: millis(duration(d)?),
                uptime_ms,
            })
        }
        _ => Err(
            "expected `fault garbage N`, `fault drop-frames N`, `fault reader-silent uhf|eseal DURATION`, `fault unplug DURATION` or `fault restart DURATION [uptime=DURATION]`"
                .into(),
        ),
    }
}

/// Carry out `script` on `board`, saying what happens on `out`.
pub fn run_script(board: &VirtualBoard, script: &Script, out: &mut impl Write) -> io::Result<()> {
    for (line, step) in &script.steps {
        run_step(board, *line, step, out)?;
    }
    Ok(())
}

fn run_step(
    board: &VirtualBoard,
    line: usize,
    step: &Step,
    out: &mut impl Write,
) -> io::Result<()> {
    match step {
        Step::Arrive(truck) => {
            writeln!(
                out,
                "[{line}] truck arrives: {} tag(s), {} e-seal(s)",
                truck.tags.len(),
                truck.eseals.len()
            )?;
            board.arrive(truck.clone());
        }
        Step::Leave => {
            writeln!(out, "[{line}] truck leaves")?;
            board.leave();
        }
        Step::Wait(d) => {
            std::thread::sleep(*d);
            let s = board.stats();
            writeln!(
                out,
                "[{line}] after {}: light {}, barrier {}, link {}, {} frames sent, {} received",
                humantime::format_duration(*d),
                board.lights(),
                board.barrier(),
                if s.link_up { "up" } else { "down" },
                s.frames_sent,
                s.frames_received
            )?;
        }
        Step::Fault(fault) => {
            writeln!(out, "[{line}] fault: {}", describe(fault))?;
            board.inject(fault.clone());
        }
    }
    out.flush()
}

fn describe(fault: &Fault) -> String {
    match fault {
        Fault::Garbage(bytes) => format!("{} bytes of line noise", bytes.len()),
        Fault::DropFrames(n) => format!("drop the next {n} frame(s)"),
        Fault::ReaderSilent { uhf, for_ms } => format!(
            "{} reader silent for {for_ms} ms",
            if *uhf { "UHF" } else { "e-seal" }
        ),
        Fault::Unplug { for_ms } => format!("link unplugged for {for_ms} ms"),
        Fault::Restart { down_ms, uptime_ms } => format!(
            "board restarts: dark for {down_ms} ms, then a new boot with uptime {uptime_ms} ms"
        ),
    }
}

/// `aeogate board`: start a virtual board for `lane`, print the paths the agent opens,
/// then run `script`, or, without one, read script lines from standard input until it
/// ends (a line runs as soon as it is entered). The board stops when this returns.
pub fn run_board_cli(lane: &str, script: Option<&Path>) -> anyhow::Result<()> {
    let cfg = VirtualBoardConfig {
        lane: lane.into(),
        ..VirtualBoardConfig::default()
    };
    let seed = cfg.seed;
    // Parse before starting, so a bad script fails fast.
    let parsed = match script {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading lane script {}", path.display()))?;
            Some(
                parse_script(&text, seed)
                    .with_context(|| format!("in lane script {}", path.display()))?,
            )
        }
        None => None,
    };
    let board = VirtualBoard::spawn(cfg)?;
    let stdout = io::stdout();
    let mut out = stdout.lock();
    writeln!(out, "virtual board for lane {}", board.lane())?;
    writeln!(out, "tty:  {}", board.tty_path().display())?;
    writeln!(
        out,
        "link: {} (stable across unplugs)",
        board.tty_link().display()
    )?;
    out.flush()?;
    match parsed {
        Some(script) => run_script(&board, &script, &mut out)?,
        None => {
            let mut rng = Rng::new(seed);
            for (i, line) in io::stdin().lock().lines().enumerate() {
                let line_no = i + 1;
                let text = line.context("reading script lines from standard input")?;
                match parse_line(&text, &mut rng) {
                    Ok(Some(step)) => run_step(&board, line_no, &step, &mut out)?,
                    Ok(None) => {}
                    Err(message) => writeln!(
                        out,
                        "{}",
                        ScriptError {
                            line: line_no,
                            message
                        }
                    )?,
                }
            }
        }
    }
    if let Some(e) = board.thread_error() {
        anyhow::bail!("virtual board: {e}");
    }
    Ok(())
}
